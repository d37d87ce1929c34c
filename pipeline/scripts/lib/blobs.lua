-- Blob bookkeeping shared by the scripts that append or remove entries.
-- An entry field named `<name>@blob` holds the sha256 of a blob stored at blobPrefix..sha;
-- refsKey counts the entries that point at each blob, so a blob lives exactly as long as they do.

local function put_blobs(blobPrefix, args, at)
  local n = tonumber(args[at])
  for i = 1, n do
    local sha, bytes = args[at + 2 * i - 1], args[at + 2 * i]
    redis.call('SET', blobPrefix .. sha, bytes, 'NX')
  end
  return at + 2 * n + 1
end

local function is_blob_field(name)
  return string.sub(name, -5) == '@blob'
end

-- Counts the references among the field/value pairs args[from..to]; callers skip it for
-- entries known to carry none (the common case, and the door's hot path).
local function count_refs(args, from, to, refsKey)
  for i = from, to, 2 do
    if is_blob_field(args[i]) then redis.call('HINCRBY', refsKey, args[i + 1], 1) end
  end
end

local function append(stream, fields, refsKey)
  for i = 1, #fields, 2 do
    if is_blob_field(fields[i]) then redis.call('HINCRBY', refsKey, fields[i + 1], 1) end
  end
  return redis.call('XADD', stream, '*', unpack(fields))
end

-- Forgets one entry's references; a blob nobody points at any more is deleted.
local function release(fields, refsKey, blobPrefix)
  for i = 1, #fields, 2 do
    if is_blob_field(fields[i]) then
      local sha = fields[i + 1]
      if redis.call('HINCRBY', refsKey, sha, -1) <= 0 then
        redis.call('HDEL', refsKey, sha)
        redis.call('DEL', blobPrefix .. sha)
      end
    end
  end
end

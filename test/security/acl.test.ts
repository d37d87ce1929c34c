/**
 * The ACL users `atlas acl` prints, loaded into the real Redis: the door accepts events but can
 * touch nothing else; the stage user runs a stage; the admin inspects, replays and purges.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { aclSetUser, aclUserName, type Role, roles } from '../../pipeline/acl.ts';
import { keys as keysFor } from '../../pipeline/keys.ts';
import { doorStreams } from '../../stages/streams.ts';
import { envelope, spaceCreated, spaceId } from '../support/events.ts';
import { eventually } from '../support/eventually.ts';
import { postJson, request } from '../support/http.ts';
import { killChildren, runAtlas, spawnAtlas } from '../support/processes.ts';
import { freePort, REDIS_URL, useRedis } from '../support/redis.ts';

const fx = useRedis('acl');
const { prefix } = fx;
const k = keysFor(prefix);
const passwords = Object.fromEntries(roles.map((r) => [r, randomBytes(12).toString('hex')])) as Record<
  Role,
  string
>;
const clients: Redis[] = [];

function urlOf(role: Role): string {
  return REDIS_URL.replace('://', `://${aclUserName(prefix, role)}:${passwords[role]}@`);
}

function envOf(role: Role): Record<string, string> {
  return { REDIS_URL: urlOf(role), ATLAS_PREFIX: prefix };
}

function login(role: Role): Redis {
  const client = new Redis(urlOf(role), { protocol: 2, maxRetriesPerRequest: 0 });
  clients.push(client);
  return client;
}

async function refused(command: Promise<unknown>): Promise<void> {
  await expect(command).rejects.toThrow(/NOPERM/);
}

beforeAll(async () => {
  for (const role of roles)
    await fx.redis.call(...(aclSetUser(prefix, role, passwords[role], doorStreams) as [string]));
});

afterAll(async () => {
  for (const c of clients) c.disconnect();
  await fx.redis.call('ACL', 'DELUSER', ...roles.map((r) => aclUserName(prefix, r)));
});

afterEach(() => killChildren());

describe('Redis ACL users', () => {
  it('atlas acl prints the same users, hashed passwords only', async () => {
    const file = join(tmpdir(), `atlas-acl-${prefix}`);
    writeFileSync(file, `${passwords.door}\n`);
    const r = await runAtlas(['acl', '--door', file], { ATLAS_PREFIX: prefix });
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(aclSetUser(prefix, 'door', passwords.door, doorStreams).join(' '));
    expect(r.stdout).not.toContain(passwords.door);
  });

  it('the door accepts events and can touch nothing else; a stage runs as the stage user', async () => {
    const port = await freePort();
    const door = spawnAtlas(['run', 'ingest'], { ...envOf('door'), ATLAS_HTTP_PORT: String(port) });
    await door.waitForLog('ingest listening');
    expect((await postJson(`http://127.0.0.1:${port}/events`, spaceCreated(1))).status).toBe(202);
    const bad = spaceCreated(2);
    bad.payload = { ...(bad.payload as object), space_id: 'not-an-id' };
    expect((await postJson(`http://127.0.0.1:${port}/events`, bad)).status).toBe(202);
    // Critical events go to the door's own critical lane; stored local events are readable.
    const command = envelope('kasmina.control.lifecycle', {
      command_id: 'c1',
      seed_id: 's1',
      action: 'cull',
    });
    expect((await postJson(`http://127.0.0.1:${port}/events`, command)).status).toBe(202);
    expect(await fx.redis.xlen(k.stream('ingest:critical'))).toBe(1);
    const local = await request(`http://127.0.0.1:${port}/events?type=game.player_moved`);
    expect(local.status).toBe(200);
    expect(local.body.events).toEqual([]);
    expect((await door.term()).code).toBe(0);

    const asDoor = login('door');
    // The backlog watch reads the lanes of the generic route (its 429 covers them).
    expect(await asDoor.xlen(k.stream('events:normal'))).toBe(0);
    await refused(asDoor.xadd(k.stream('events:normal'), '*', 'forged', '1'));
    await refused(asDoor.xgroup('DESTROY', k.stream('ingest'), 'validate'));
    await refused(asDoor.del(k.dlq));
    await refused(asDoor.xadd(k.dlq, '*', 'forged', '1'));
    await refused(asDoor.xadd(k.stream('validated'), '*', 'forged', '1'));
    await refused(asDoor.flushall());
    const purge = await runAtlas(['dlq', 'purge', '--all', '--yes'], envOf('door'));
    expect(purge.code).toBe(1);
    expect(purge.stderr).toMatch(/^atlas: NOPERM .*\n$/);

    // every worker stage: leases, checkpoints, claim-check, the Redis sink
    const stages = spawnAtlas(['run', 'validate', 'transitive', 'canonical', 'serialize', 'emit'], {
      ...envOf('stage'),
      ATLAS_ROOT_SPACE_ID: spaceId(1),
    });
    // the bad event: dead-lettered, with a skip marker in its place for the ordered stages
    await eventually(async () => (await fx.redis.xlen(k.dlq)) === 1, 15_000);
    expect(await fx.redis.xlen(k.stream('validated'))).toBe(2);
    await eventually(async () => (await fx.redis.xlen(k.stream('out:topology.canonical'))) === 1, 20_000);
    expect((await stages.term()).code).toBe(0);
    expect(stages.stderr).toBe('');
    expect(stages.stdout).not.toContain('NOPERM');

    const asStage = login('stage');
    await refused(asStage.xgroup('DESTROY', k.stream('ingest'), 'validate'));
    await refused(asStage.flushall());
    await refused(asStage.get('{another-pipeline}:seq'));
  });

  it('a wrong password is refused clearly, and not printed', async () => {
    const wrong = 'Wrong-password-0451';
    const url = urlOf('admin').replace(passwords.admin, wrong);
    const r = await runAtlas(['streams'], { REDIS_URL: url, ATLAS_PREFIX: prefix });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`cannot reach Redis at redis://${aclUserName(prefix, 'admin')}:***@`);
    expect(r.stderr).toContain('WRONGPASS');
    expect(r.stdout + r.stderr).not.toContain(wrong);
  });

  it('the admin inspects, replays and purges', async () => {
    const asAdmin = envOf('admin');
    const streams = await runAtlas(['streams'], asAdmin);
    expect(streams.stdout).toContain(k.stream('ingest'));
    // The preview reads; executing enqueues a job that the stage's instance runs (XGROUP SETID).
    const preview = await runAtlas(['replay', 'validate', '--to-earliest'], asAdmin);
    expect(preview.stdout).toContain('re-reads 2 entries');
    const queued = await runAtlas(['replay', 'validate', '--to-earliest', '--execute', '--no-wait'], asAdmin);
    expect(queued.code).toBe(0);
    expect(queued.stdout).toMatch(/^job validate-replay-\w+ \(replay on validate\) queued/);
    const list = await runAtlas(['dlq', 'list', '--json'], asAdmin);
    expect(JSON.parse(list.stdout).entries).toHaveLength(1);
    const purged = await runAtlas(['dlq', 'purge', '--all', '--yes'], asAdmin);
    expect(purged.stdout).toBe('purged: 1\n');
    await refused(login('admin').flushall());
  });
});

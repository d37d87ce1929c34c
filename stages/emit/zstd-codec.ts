/**
 * zstd for kafkajs (which ships only gzip), from Node's own zlib: no native addon to compile and
 * nothing to download. The npm codecs all need one or the other: @kafkajs/zstd (cppzst) does not
 * compile against Node 24's headers; zstd-napi and @mongodb-js/zstd try to fetch prebuilt binaries
 * from outside the registry, then fall back to node-gyp (which needs Node's headers and a C++
 * toolchain on every machine) or, for the latter, to a script missing from its package.
 */
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import kafkajs from 'kafkajs';

const compress = promisify(zlib.zstdCompress);
const decompress = promisify(zlib.zstdDecompress);

/** zstd's own default level: good ratio on repeated subtrees at a small CPU cost. */
const LEVEL = 3;

/** Registers the codec with kafkajs (process-wide, as kafkajs keeps codecs). */
export function installZstd(): void {
  kafkajs.CompressionCodecs[kafkajs.CompressionTypes.ZSTD] = () => ({
    compress: (encoder: { buffer: Buffer }) =>
      compress(encoder.buffer, { params: { [zlib.constants.ZSTD_c_compressionLevel]: LEVEL } }),
    decompress: (buffer: Buffer) => decompress(buffer),
  });
}

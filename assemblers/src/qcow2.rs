//! A qcow2 writer: turns a raw disk image into qcow2, compressing clusters on
//! every core, byte for byte the same for the same input and options.
//!
//! Why not `qemu-img convert -c`: it compresses one cluster at a time unless
//! told to write out of order (`-W`), and then where each cluster lands in the
//! file depends on thread timing. Here the clusters of a batch are compressed
//! in parallel and written in guest order, so the layout is a function of the
//! input alone. The compressors are the ones built into this program (zstd's
//! and zlib-rs), not the host's, so the bytes do not change with the host's
//! libraries either.
//!
//! File layout, all offsets cluster-aligned except compressed data:
//!
//! ```text
//! header | data, in guest order | L2 tables | L1 table | refcount table | refcount blocks
//! ```
//!
//! All-zero clusters (holes in the raw file included) stay unallocated and
//! read as zeros. A cluster that does not compress below the cluster size is
//! stored as is, as qemu does. The format is qemu's `docs/interop/qcow2.txt`.
//!
//! A [`Reuse`] holds what an earlier raw image's clusters compressed to
//! ([`write_reuse`]): where the new raw image has the same bytes at the same
//! place, that is taken instead of compressing again. Compression is a
//! function of the bytes, so the file is the same either way.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

const CLUSTER_BITS: u32 = 16;
const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// L2 entries per table: one table maps 512 MiB of the guest disk.
const L2_ENTRIES: u64 = CLUSTER / 8;
/// 16-bit refcounts (refcount_order 4).
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER / 2;
/// L1/L2 flag: the cluster's refcount is exactly one.
const COPIED: u64 = 1 << 63;
const COMPRESSED: u64 = 1 << 62;
/// Where a compressed descriptor's sector count starts: 62 - (cluster_bits - 8).
const CSIZE_SHIFT: u32 = 62 - (CLUSTER_BITS - 8);
/// Clusters read, compressed and written per round: 32 MiB of input.
const BATCH: usize = 512;
/// qemu's default zstd level.
const ZSTD_LEVEL: i32 = 3;
/// qemu inflates with a 4 KiB window (`inflateInit2(-12)`), so the deflate
/// stream must not refer further back than that.
const ZLIB_WINDOW_BITS: u8 = 12;

/// Cluster compression; as an assembler option, `zlib` is the default (as
/// in osbuild).
#[derive(serde::Deserialize, schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zlib,
    Zstd,
    None,
}

/// The qcow2 version, named as qemu's `compat` option: 2 is `0.10`, 3 is `1.1`.
#[derive(serde::Deserialize, schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    #[serde(rename = "0.10")]
    V2,
    #[serde(rename = "1.1")]
    V3,
}

/// What the writer did, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Guest clusters left unallocated because they are all zeros.
    pub zero: u64,
    pub compressed: u64,
    /// Clusters stored uncompressed.
    pub plain: u64,
    /// Clusters (compressed or plain) taken from a [`Reuse`], not compressed again.
    pub reused: u64,
    /// Size of the qcow2 file.
    pub bytes: u64,
}

/// One guest cluster, ready to be written.
enum Block {
    Zero,
    Plain,
    Compressed(Vec<u8>),
}

/// Writes `dest` as a qcow2 image of the raw image `raw`, taking the
/// clusters `reuse` has (for the same compression) from it.
pub fn convert(
    raw: &Path,
    dest: &Path,
    compression: Compression,
    version: Version,
    reuse: Option<&Reuse>,
) -> Result<Summary, String> {
    if compression == Compression::Zstd && version == Version::V2 {
        return Err("zstd compression needs qcow2 version 3 (qcow2_compat 1.1)".into());
    }
    let at = |p: &Path| {
        let p = p.display().to_string();
        move |e: std::io::Error| format!("{p}: {e}")
    };
    let src = File::open(raw).map_err(at(raw))?;
    let size = src.metadata().map_err(at(raw))?.len();
    if size == 0 || !size.is_multiple_of(512) {
        return Err(format!(
            "{}: size {size} is not a positive multiple of 512",
            raw.display()
        ));
    }
    let file = File::create(dest).map_err(at(dest))?;
    let mut writer = Writer {
        out: BufWriter::with_capacity(4 << 20, &file),
        pos: 0,
        refcounts: Vec::new(),
        summary: Summary::default(),
    };
    // (guest cluster, L2 entry) of every allocated cluster, in guest order.
    let mut mapped: Vec<(u64, u64)> = Vec::new();

    // The header cluster, filled in last.
    writer.write(&[0; CLUSTER as usize]).map_err(at(dest))?;
    writer.count(0);

    let data = clusters_with_data(&src, size).map_err(at(raw))?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(16);
    let mut buf = vec![0u8; BATCH * CLUSTER as usize];
    // The reused image's cluster, to compare with.
    let mut before = vec![0u8; CLUSTER as usize];
    let mut progress = osbuild_stages::progress::Progress::new("qcow2", data.len() as u64 * CLUSTER);
    for (done, batch) in data.chunks(BATCH).enumerate() {
        progress.update((done * BATCH) as u64 * CLUSTER);
        let input = &mut buf[..batch.len() * CLUSTER as usize];
        read_batch(&src, batch, size, input).map_err(at(raw))?;
        let chunks: Vec<&[u8]> = input.chunks(CLUSTER as usize).collect();
        let mut blocks: Vec<Option<Block>> = Vec::with_capacity(chunks.len());
        for (&cluster, chunk) in batch.iter().zip(&chunks) {
            blocks.push(match reuse {
                Some(r) => r.block(cluster, chunk, &mut before)?,
                None => None,
            });
        }
        writer.summary.reused += blocks
            .iter()
            .filter(|b| matches!(b, Some(Block::Plain | Block::Compressed(_))))
            .count() as u64;
        let todo: Vec<&[u8]> = chunks
            .iter()
            .zip(&blocks)
            .filter(|(_, b)| b.is_none())
            .map(|(c, _)| *c)
            .collect();
        let mut fresh = compress_all(&todo, compression, workers)?.into_iter();
        let blocks = blocks
            .into_iter()
            .map(|b| b.unwrap_or_else(|| fresh.next().expect("one compressed block per cluster left")));
        for ((&cluster, block), chunk) in batch.iter().zip(blocks).zip(input.chunks(CLUSTER as usize)) {
            if let Some(entry) = writer.put(block, chunk).map_err(at(dest))? {
                mapped.push((cluster, entry));
            }
        }
    }

    // L2 tables, one per 512 MiB of guest disk that has data.
    writer.align().map_err(at(dest))?;
    let mut l1 = vec![0u64; size.div_ceil(CLUSTER * L2_ENTRIES) as usize];
    for table in mapped.chunk_by(|a, b| a.0 / L2_ENTRIES == b.0 / L2_ENTRIES) {
        let mut entries = vec![0u64; L2_ENTRIES as usize];
        for &(cluster, entry) in table {
            entries[(cluster % L2_ENTRIES) as usize] = entry;
        }
        l1[(table[0].0 / L2_ENTRIES) as usize] = writer.pos | COPIED;
        writer.count(writer.pos / CLUSTER);
        let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_be_bytes()).collect();
        writer.write(&bytes).map_err(at(dest))?;
    }

    // The L1 table.
    let l1_offset = writer.pos;
    let l1_bytes: Vec<u8> = l1.iter().flat_map(|e| e.to_be_bytes()).collect();
    writer.count_clusters(l1_offset, l1_bytes.len() as u64);
    writer.write_clusters(&l1_bytes).map_err(at(dest))?;

    let (table_clusters, blocks) = refcount_layout(writer.pos / CLUSTER);
    let table_offset = writer.pos;
    let blocks_offset = table_offset + table_clusters * CLUSTER;
    writer.count_clusters(table_offset, (table_clusters + blocks) * CLUSTER);
    let table: Vec<u8> = (0..blocks)
        .flat_map(|b| (blocks_offset + b * CLUSTER).to_be_bytes())
        .collect();
    writer.write_clusters(&table).map_err(at(dest))?;
    let mut refcounts = std::mem::take(&mut writer.refcounts);
    refcounts.resize((blocks * REFCOUNTS_PER_BLOCK) as usize, 0);
    let block_bytes: Vec<u8> = refcounts.iter().flat_map(|r| r.to_be_bytes()).collect();
    writer.write_clusters(&block_bytes).map_err(at(dest))?;
    let end = writer.pos;
    let mut summary = std::mem::take(&mut writer.summary);
    writer.out.flush().map_err(at(dest))?;
    drop(writer);

    let header = header(
        version,
        compression,
        size,
        l1.len() as u32,
        l1_offset,
        table_offset,
        table_clusters,
    );
    file.write_all_at(&header, 0).map_err(at(dest))?;
    summary.bytes = end;
    Ok(summary)
}

/// How many clusters the refcount table and the refcount blocks take when
/// they follow `before` clusters: they count themselves too, so grow them
/// until they cover every cluster of the file.
fn refcount_layout(before: u64) -> (u64, u64) {
    let (mut table_clusters, mut blocks) = (1u64, 1u64);
    loop {
        let total = before + table_clusters + blocks;
        let need_blocks = total.div_ceil(REFCOUNTS_PER_BLOCK);
        let need_table = (need_blocks * 8).div_ceil(CLUSTER);
        if (need_table, need_blocks) == (table_clusters, blocks) {
            return (table_clusters, blocks);
        }
        (table_clusters, blocks) = (need_table, need_blocks);
    }
}

/// Appends to the image, keeping track of where it is and of each host
/// cluster's refcount.
struct Writer<'a> {
    out: BufWriter<&'a File>,
    pos: u64,
    refcounts: Vec<u16>,
    summary: Summary,
}

impl Writer<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Pads with zeros to the next cluster boundary.
    fn align(&mut self) -> std::io::Result<()> {
        let pad = self.pos.next_multiple_of(CLUSTER) - self.pos;
        self.write(&vec![0; pad as usize])
    }

    /// Writes `bytes` padded to whole clusters (at least one).
    fn write_clusters(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        debug_assert!(self.pos.is_multiple_of(CLUSTER));
        self.write(bytes)?;
        let padded = (bytes.len() as u64).div_ceil(CLUSTER).max(1) * CLUSTER;
        self.write(&vec![0; (padded - bytes.len() as u64) as usize])
    }

    /// Counts one more reference to a host cluster. A 16-bit count cannot
    /// overflow: the smallest compressed cluster takes over 8 bytes, so fewer
    /// than 8192 share a host cluster.
    fn count(&mut self, cluster: u64) {
        let i = cluster as usize;
        if self.refcounts.len() <= i {
            self.refcounts.resize(i + 1, 0);
        }
        self.refcounts[i] += 1;
    }

    /// Counts the clusters of `len` bytes (at least one) from `offset`.
    fn count_clusters(&mut self, offset: u64, len: u64) {
        for c in 0..len.div_ceil(CLUSTER).max(1) {
            self.count(offset / CLUSTER + c);
        }
    }

    /// Writes one guest cluster; returns its L2 entry, none for a zero cluster.
    fn put(&mut self, block: Block, raw: &[u8]) -> std::io::Result<Option<u64>> {
        Ok(Some(match block {
            Block::Zero => {
                self.summary.zero += 1;
                return Ok(None);
            }
            Block::Plain => {
                self.align()?;
                let offset = self.pos;
                self.count(offset / CLUSTER);
                self.write(raw)?;
                self.summary.plain += 1;
                offset | COPIED
            }
            Block::Compressed(data) => {
                // Packed byte by byte; the entry holds the offset and how
                // many 512-byte sectors after the first the data reaches
                // into. Every host cluster it touches counts it once.
                let offset = self.pos;
                let last = offset + data.len() as u64 - 1;
                for c in offset / CLUSTER..=last / CLUSTER {
                    self.count(c);
                }
                self.write(&data)?;
                self.summary.compressed += 1;
                let sectors = (last >> 9) - (offset >> 9);
                offset | COMPRESSED | (sectors << CSIZE_SHIFT)
            }
        }))
    }
}

fn header(
    version: Version,
    compression: Compression,
    size: u64,
    l1_size: u32,
    l1_offset: u64,
    refcount_table_offset: u64,
    refcount_table_clusters: u64,
) -> Vec<u8> {
    let mut h = Vec::with_capacity(112);
    h.extend_from_slice(b"QFI\xfb");
    h.extend_from_slice(&(if version == Version::V2 { 2u32 } else { 3 }).to_be_bytes());
    h.extend_from_slice(&0u64.to_be_bytes()); // backing file offset
    h.extend_from_slice(&0u32.to_be_bytes()); // backing file name length
    h.extend_from_slice(&CLUSTER_BITS.to_be_bytes());
    h.extend_from_slice(&size.to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes()); // no encryption
    h.extend_from_slice(&l1_size.to_be_bytes());
    h.extend_from_slice(&l1_offset.to_be_bytes());
    h.extend_from_slice(&refcount_table_offset.to_be_bytes());
    h.extend_from_slice(&(refcount_table_clusters as u32).to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes()); // snapshots
    h.extend_from_slice(&0u64.to_be_bytes()); // snapshot table offset
    if version == Version::V3 {
        // Incompatible feature bit 3: a compression type other than zlib.
        let incompatible: u64 = if compression == Compression::Zstd { 1 << 3 } else { 0 };
        h.extend_from_slice(&incompatible.to_be_bytes());
        h.extend_from_slice(&0u64.to_be_bytes()); // compatible features
        h.extend_from_slice(&0u64.to_be_bytes()); // autoclear features
        h.extend_from_slice(&4u32.to_be_bytes()); // refcount order: 16 bits
        h.extend_from_slice(&112u32.to_be_bytes()); // header length
        h.push(u8::from(compression == Compression::Zstd)); // 0 zlib, 1 zstd
        h.resize(112, 0);
    }
    // The header extensions that follow start with the end marker (zeros).
    h
}

/// The clusters the raw file has data in (not holes), in order.
fn clusters_with_data(src: &File, size: u64) -> std::io::Result<Vec<u64>> {
    use nix::unistd::{lseek, Whence};
    let all = || (0..size.div_ceil(CLUSTER)).collect();
    let mut clusters: Vec<u64> = Vec::new();
    let mut offset = 0i64;
    while (offset as u64) < size {
        let start = match lseek(src, offset, Whence::SeekData) {
            Ok(s) => s,
            Err(nix::errno::Errno::ENXIO) => break,
            // No SEEK_DATA on this file system: read everything.
            Err(nix::errno::Errno::EINVAL) => return Ok(all()),
            Err(e) => return Err(e.into()),
        };
        let end = lseek(src, start, Whence::SeekHole).map_err(std::io::Error::from)?;
        let first = start as u64 / CLUSTER;
        let last = (end as u64 - 1) / CLUSTER;
        let from = clusters.last().map_or(first, |&c| first.max(c + 1));
        clusters.extend(from..=last);
        offset = end;
    }
    Ok(clusters)
}

/// Reads the `clusters` into `buf`, one after another.
fn read_batch(src: &File, clusters: &[u64], size: u64, buf: &mut [u8]) -> std::io::Result<()> {
    for (&cluster, chunk) in clusters.iter().zip(buf.chunks_mut(CLUSTER as usize)) {
        read_cluster(src, cluster, size, chunk)?;
    }
    Ok(())
}

fn read_cluster(src: &File, cluster: u64, size: u64, buf: &mut [u8]) -> std::io::Result<()> {
    let offset = cluster * CLUSTER;
    let len = (size - offset).min(CLUSTER) as usize;
    src.read_exact_at(&mut buf[..len], offset)?;
    buf[len..].fill(0);
    Ok(())
}

/// Compresses `clusters` on `workers` threads; the result is in their order.
fn compress_all(clusters: &[&[u8]], compression: Compression, workers: usize) -> Result<Vec<Block>, String> {
    let next = AtomicUsize::new(0);
    let results: Vec<Result<Vec<(usize, Block)>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers.min(clusters.len()).max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut compressor = Compressor::new(compression)?;
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(cluster) = clusters.get(i) else { break };
                        done.push((i, compressor.block(cluster)?));
                    }
                    Ok(done)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a compression thread panicked".into())))
            .collect()
    });
    let mut blocks: Vec<Option<Block>> = (0..clusters.len()).map(|_| None).collect();
    for r in results {
        for (i, b) in r? {
            blocks[i] = Some(b);
        }
    }
    Ok(blocks
        .into_iter()
        .map(|b| b.expect("every cluster compressed"))
        .collect())
}

/// One thread's compressor, reused across clusters.
enum Compressor {
    None,
    Zlib(flate2::Compress, Vec<u8>),
    Zstd(zstd::bulk::Compressor<'static>, Vec<u8>),
}

impl Compressor {
    fn new(compression: Compression) -> Result<Self, String> {
        Ok(match compression {
            Compression::None => Compressor::None,
            Compression::Zlib => Compressor::Zlib(
                flate2::Compress::new_with_window_bits(flate2::Compression::default(), false, ZLIB_WINDOW_BITS),
                Vec::with_capacity(CLUSTER as usize),
            ),
            Compression::Zstd => Compressor::Zstd(
                zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(|e| format!("zstd: {e}"))?,
                Vec::with_capacity(zstd::zstd_safe::compress_bound(CLUSTER as usize)),
            ),
        })
    }

    fn block(&mut self, cluster: &[u8]) -> Result<Block, String> {
        if is_zero(cluster) {
            return Ok(Block::Zero);
        }
        let compressed = match self {
            Compressor::None => return Ok(Block::Plain),
            Compressor::Zlib(z, out) => {
                z.reset();
                out.clear();
                // Room for one byte less than a cluster: if the stream does
                // not end in it, the cluster is stored as is.
                match z.compress_vec(cluster, out, flate2::FlushCompress::Finish) {
                    Ok(flate2::Status::StreamEnd) if out.len() < CLUSTER as usize => out.as_slice(),
                    Ok(_) => return Ok(Block::Plain),
                    Err(e) => return Err(format!("zlib: {e}")),
                }
            }
            Compressor::Zstd(z, out) => {
                out.clear();
                z.compress_to_buffer(cluster, out).map_err(|e| format!("zstd: {e}"))?;
                out.as_slice()
            }
        };
        Ok(if compressed.len() < CLUSTER as usize {
            Block::Compressed(compressed.to_vec())
        } else {
            Block::Plain
        })
    }
}

/// What an earlier raw image's data clusters compressed to: its raw file,
/// an index (per cluster: its number, its kind, where its compressed bytes
/// are in the data file and how many) and the data file.
pub struct Reuse {
    raw: File,
    size: u64,
    entries: std::collections::HashMap<u64, (u8, u64, u32)>,
    data: File,
}

const ENTRY: usize = 8 + 1 + 8 + 4;
const KIND_ZERO: u8 = 0;
const KIND_PLAIN: u8 = 1;
const KIND_COMPRESSED: u8 = 2;

impl Reuse {
    pub fn open(raw: &Path, index: &Path, data: &Path) -> Result<Reuse, String> {
        let at = |p: &Path| {
            let p = p.display().to_string();
            move |e: std::io::Error| format!("{p}: {e}")
        };
        let bytes = std::fs::read(index).map_err(at(index))?;
        if !bytes.len().is_multiple_of(ENTRY) {
            return Err(format!("{}: not a cluster index", index.display()));
        }
        let entries = bytes
            .chunks(ENTRY)
            .map(|e| {
                let u64_at = |o: usize| u64::from_le_bytes(e[o..o + 8].try_into().expect("8 bytes"));
                let len = u32::from_le_bytes(e[17..21].try_into().expect("4 bytes"));
                (u64_at(0), (e[8], u64_at(9), len))
            })
            .collect();
        let raw_file = File::open(raw).map_err(at(raw))?;
        let size = raw_file.metadata().map_err(at(raw))?.len();
        Ok(Reuse {
            raw: raw_file,
            size,
            entries,
            data: File::open(data).map_err(at(data))?,
        })
    }

    /// The stored block of `cluster`, when the earlier image had the same
    /// bytes there (read into `before`, a cluster's room).
    fn block(&self, cluster: u64, now: &[u8], before: &mut [u8]) -> Result<Option<Block>, String> {
        let Some(&(kind, offset, len)) = self.entries.get(&cluster) else {
            return Ok(None);
        };
        if cluster * CLUSTER >= self.size {
            return Ok(None);
        }
        read_cluster(&self.raw, cluster, self.size, before).map_err(|e| format!("reused image: {e}"))?;
        if before != now {
            return Ok(None);
        }
        Ok(Some(match kind {
            KIND_ZERO => Block::Zero,
            KIND_PLAIN => Block::Plain,
            KIND_COMPRESSED => {
                let mut data = vec![0u8; len as usize];
                self.data
                    .read_exact_at(&mut data, offset)
                    .map_err(|e| format!("reused clusters: {e}"))?;
                Block::Compressed(data)
            }
            other => return Err(format!("reused clusters: unknown kind {other}")),
        }))
    }
}

/// Compresses every data cluster of `raw` and writes what [`Reuse::open`]
/// reads: the index and the data. Returns how many clusters it holds.
pub fn write_reuse(raw: &Path, index: &Path, data: &Path, compression: Compression) -> Result<u64, String> {
    let at = |p: &Path| {
        let p = p.display().to_string();
        move |e: std::io::Error| format!("{p}: {e}")
    };
    let src = File::open(raw).map_err(at(raw))?;
    let size = src.metadata().map_err(at(raw))?.len();
    let clusters = clusters_with_data(&src, size).map_err(at(raw))?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(16);
    let mut index_out = BufWriter::new(File::create(index).map_err(at(index))?);
    let mut data_out = BufWriter::new(File::create(data).map_err(at(data))?);
    let mut pos = 0u64;
    let mut buf = vec![0u8; BATCH * CLUSTER as usize];
    for batch in clusters.chunks(BATCH) {
        let input = &mut buf[..batch.len() * CLUSTER as usize];
        read_batch(&src, batch, size, input).map_err(at(raw))?;
        let chunks: Vec<&[u8]> = input.chunks(CLUSTER as usize).collect();
        for (&cluster, block) in batch.iter().zip(compress_all(&chunks, compression, workers)?) {
            let (kind, len) = match &block {
                Block::Zero => (KIND_ZERO, 0),
                Block::Plain => (KIND_PLAIN, 0),
                Block::Compressed(d) => {
                    data_out.write_all(d).map_err(at(data))?;
                    (KIND_COMPRESSED, d.len() as u32)
                }
            };
            let mut entry = Vec::with_capacity(ENTRY);
            entry.extend_from_slice(&cluster.to_le_bytes());
            entry.push(kind);
            entry.extend_from_slice(&pos.to_le_bytes());
            entry.extend_from_slice(&len.to_le_bytes());
            index_out.write_all(&entry).map_err(at(index))?;
            pos += u64::from(len);
        }
    }
    index_out.flush().map_err(at(index))?;
    data_out.flush().map_err(at(data))?;
    Ok(clusters.len() as u64)
}

fn is_zero(bytes: &[u8]) -> bool {
    // OR-folding fixed-size chunks lets the compiler use vector instructions.
    let mut chunks = bytes.chunks_exact(64);
    chunks.all(|c| c.iter().fold(0u8, |acc, &b| acc | b) == 0) && chunks.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::testing::output;
    use crate::util::TempDir;
    use std::process::Command;

    /// A raw image with every kind of cluster: a hole, all-zero data,
    /// compressible text, incompressible noise, a cluster only partly
    /// non-zero, and a last cluster cut short (the size is not a multiple of
    /// the cluster size). Over 512 MiB, so it needs two L2 tables.
    fn raw_image(path: &Path) -> u64 {
        let size = 600 * (1 << 20) + 3 * 512;
        let f = File::create(path).unwrap();
        f.set_len(size).unwrap();
        let text: Vec<u8> = (0..CLUSTER * 3)
            .flat_map(|i| format!("line {i} of a compressible file\n").into_bytes())
            .take((CLUSTER * 3) as usize)
            .collect();
        f.write_all_at(&text, CLUSTER).unwrap();
        f.write_all_at(&vec![0; CLUSTER as usize], 5 * CLUSTER).unwrap();
        // xorshift noise: does not compress.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..CLUSTER * 2)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        f.write_all_at(&noise, 8 * CLUSTER).unwrap();
        f.write_all_at(b"one byte in a cluster", 20 * CLUSTER + 777).unwrap();
        f.write_all_at(&text[..4096], 520 * (1 << 20)).unwrap();
        f.write_all_at(b"the end", size - 7).unwrap();
        size
    }

    fn qemu_img(args: &[&str], image: &Path) -> String {
        output(Command::new("qemu-img").args(args).arg(image))
    }

    #[test]
    fn reused_clusters_make_the_same_file() {
        let tmp = TempDir::new("osbuild-qcow2").unwrap();
        let before = tmp.path().join("before.raw");
        raw_image(&before);
        let (index, data) = (tmp.path().join("index"), tmp.path().join("data"));
        let held = write_reuse(&before, &index, &data, Compression::Zlib).unwrap();
        let after = tmp.path().join("after.raw");
        std::fs::copy(&before, &after).unwrap();
        let f = File::options().write(true).open(&after).unwrap();
        f.write_all_at(b"changed", 20 * CLUSTER + 100).unwrap();
        f.write_all_at(b"new", 300 * CLUSTER).unwrap();
        drop(f);
        let reuse = Reuse::open(&before, &index, &data).unwrap();
        let (plain, reused) = (tmp.path().join("plain.qcow2"), tmp.path().join("reused.qcow2"));
        let fresh = convert(&after, &plain, Compression::Zlib, Version::V3, None).unwrap();
        let s = convert(&after, &reused, Compression::Zlib, Version::V3, Some(&reuse)).unwrap();
        assert_eq!(std::fs::read(&plain).unwrap(), std::fs::read(&reused).unwrap());
        assert_eq!(fresh.reused, 0);
        // Every data cluster but the changed one and the new one is taken.
        assert_eq!(s.compressed + s.plain, fresh.compressed + fresh.plain);
        assert_eq!(s.reused, s.compressed + s.plain - 2, "{s:?} of {held} held");
    }

    #[test]
    fn qemu_reads_what_it_writes() {
        let tmp = TempDir::new("osbuild-qcow2").unwrap();
        let raw = tmp.path().join("disk.raw");
        let size = raw_image(&raw);
        for (compression, version) in [
            (Compression::Zstd, Version::V3),
            (Compression::Zlib, Version::V3),
            (Compression::Zlib, Version::V2),
            (Compression::None, Version::V3),
            (Compression::None, Version::V2),
        ] {
            let name = format!("{compression:?}-{version:?}");
            let a = tmp.path().join(format!("{name}-a.qcow2"));
            let b = tmp.path().join(format!("{name}-b.qcow2"));
            let summary = convert(&raw, &a, compression, version, None).unwrap();
            convert(&raw, &b, compression, version, None).unwrap();
            assert_eq!(
                std::fs::read(&a).unwrap(),
                std::fs::read(&b).unwrap(),
                "{name}: reproducible"
            );
            assert_eq!(summary.bytes, std::fs::metadata(&a).unwrap().len(), "{name}");
            assert_eq!(summary.compressed + summary.plain, 8, "{name}: {summary:?}");
            if compression == Compression::None {
                assert_eq!(summary.plain, 8, "{name}");
            } else {
                assert_eq!(summary.plain, 2, "{name}: the noise is stored as is");
            }

            // qemu's own checks: refcounts, flags, and the guest's bytes.
            let check = Command::new("qemu-img")
                .args(["check", "-f", "qcow2"])
                .arg(&a)
                .output()
                .unwrap();
            let report = String::from_utf8_lossy(&check.stdout);
            assert!(check.status.success(), "{name}: qemu-img check: {report}");
            assert!(report.contains("No errors were found"), "{name}: {report}");
            assert!(!report.contains("leak"), "{name}: {report}");
            let cmp = Command::new("qemu-img")
                .args(["compare", "-f", "raw", "-F", "qcow2"])
                .arg(&raw)
                .arg(&a)
                .output()
                .unwrap();
            assert!(cmp.status.success(), "{name}: {}", String::from_utf8_lossy(&cmp.stdout));

            let info: serde_json::Value = serde_json::from_str(&qemu_img(&["info", "--output=json"], &a)).unwrap();
            assert_eq!(info["virtual-size"], size, "{name}");
            let specific = &info["format-specific"]["data"];
            let compat = if version == Version::V2 { "0.10" } else { "1.1" };
            assert_eq!(specific["compat"], compat, "{name}: {info}");
            if version == Version::V3 {
                let ctype = if compression == Compression::Zstd {
                    "zstd"
                } else {
                    "zlib"
                };
                assert_eq!(specific["compression-type"], ctype, "{name}: {info}");
            }
        }
        assert!(convert(&raw, &tmp.path().join("x"), Compression::Zstd, Version::V2, None).is_err());
    }

    #[test]
    fn refcount_structures_cover_themselves() {
        assert_eq!(refcount_layout(1), (1, 1));
        // 32768 clusters per block: the table and the block are the last two.
        assert_eq!(refcount_layout(32766), (1, 1));
        assert_eq!(refcount_layout(32767), (1, 2));
        // 8192 block pointers per table cluster.
        // 8192 block pointers per table cluster: one more block needs a
        // second table cluster.
        assert_eq!(refcount_layout(8192 * 32768 - 8193), (1, 8192));
        assert_eq!(refcount_layout(8192 * 32768 - 8192), (2, 8193));
    }

    #[test]
    fn small_and_empty_images() {
        let tmp = TempDir::new("osbuild-qcow2").unwrap();
        let raw = tmp.path().join("odd.raw");
        File::create(&raw).unwrap().set_len(1000).unwrap();
        let err = convert(
            &raw,
            &tmp.path().join("odd.qcow2"),
            Compression::None,
            Version::V3,
            None,
        )
        .unwrap_err();
        assert!(err.contains("multiple of 512"), "{err}");

        let raw = tmp.path().join("empty.raw");
        File::create(&raw).unwrap().set_len(1 << 30).unwrap();
        let out = tmp.path().join("empty.qcow2");
        let s = convert(&raw, &out, Compression::Zstd, Version::V3, None).unwrap();
        assert_eq!(
            (s.compressed, s.plain, s.zero),
            (0, 0, 0),
            "a hole has no clusters to look at"
        );
        // header, L1, refcount table, one refcount block
        assert_eq!(s.bytes, 4 * CLUSTER);
        let check = Command::new("qemu-img")
            .args(["check", "-f", "qcow2"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    }
}

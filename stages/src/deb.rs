//! Reading a `.deb`'s control file, and making a local package index of
//! pinned files: what a locked stage installs from instead of a mirror.
//!
//! A `.deb` is an `ar` archive: `debian-binary`, `control.tar[.xz|.gz|.zst]`,
//! `data.tar...`. Only the control member is read (a few kilobytes at the
//! start of the file), so indexing a stage's hundred packages takes
//! milliseconds. The ar framing is a few lines and read here; the tar and
//! the compressors are crates.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The text of the `control` file of the `.deb` at `path`.
pub(crate) fn control(path: &Path) -> Result<String, String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut f = std::fs::File::open(path).map_err(err)?;
    let mut magic = [0u8; 8];
    f.read_exact(&mut magic).map_err(err)?;
    if &magic != b"!<arch>\n" {
        return Err(format!("{}: not a Debian package (no ar header)", path.display()));
    }
    loop {
        let mut header = [0u8; 60];
        f.read_exact(&mut header)
            .map_err(|_| format!("{}: no control member", path.display()))?;
        let name = String::from_utf8_lossy(&header[..16])
            .trim_end()
            .trim_end_matches('/')
            .to_string();
        let size: u64 = String::from_utf8_lossy(&header[48..58])
            .trim()
            .parse()
            .map_err(|_| format!("{}: a damaged ar header", path.display()))?;
        if let Some(ext) = name.strip_prefix("control.tar") {
            if size > 64 << 20 {
                return Err(format!("{}: a control member of {size} bytes", path.display()));
            }
            let mut member = vec![0; size as usize];
            f.read_exact(&mut member).map_err(err)?;
            let tar = decompress(ext, &member).map_err(|e| format!("{}: {name}: {e}", path.display()))?;
            return control_in_tar(&tar).ok_or_else(|| format!("{}: no ./control in {name}", path.display()));
        }
        // Members are padded to an even size.
        f.seek(SeekFrom::Current((size + size % 2) as i64)).map_err(err)?;
    }
}

pub(crate) fn decompress(ext: &str, data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match ext {
        "" => out.extend_from_slice(data),
        ".xz" => lzma_rs::xz_decompress(&mut std::io::Cursor::new(data), &mut out).map_err(|e| e.to_string())?,
        ".gz" => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .map_err(|e| e.to_string())?;
        }
        ".zst" => out = zstd::decode_all(data).map_err(|e| e.to_string())?,
        other => return Err(format!("unknown compression {other}")),
    }
    Ok(out)
}

fn control_in_tar(tar: &[u8]) -> Option<String> {
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().ok()? {
        let mut entry = entry.ok()?;
        let path = entry.path().ok()?.into_owned();
        if path == Path::new("./control") || path == Path::new("control") {
            let mut text = String::new();
            entry.read_to_string(&mut text).ok()?;
            return Some(text);
        }
    }
    None
}

/// A `Packages` stanza for a pinned file: its control fields (with the
/// archive's `priority`, when given, for the file's own), then where the
/// file is and its checksum.
pub(crate) fn stanza(control: &str, filename: &str, size: u64, sha256: &str, priority: Option<&str>) -> String {
    let mut s = String::new();
    for line in control.lines().filter(|l| !l.trim().is_empty()) {
        if priority.is_some() && line.starts_with("Priority:") {
            continue;
        }
        s.push_str(line);
        s.push('\n');
    }
    if let Some(p) = priority {
        s += &format!("Priority: {p}\n");
    }
    s + &format!("Filename: {filename}\nSize: {size}\nSHA256: {sha256}\n\n")
}

/// One control field's value.
pub(crate) fn field<'a>(control: &'a str, key: &str) -> Option<&'a str> {
    control.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny .deb, made the way dpkg-deb lays one out.
    fn deb(dir: &Path, compression: &str) -> std::path::PathBuf {
        let control = "Package: hello\nVersion: 2.10-3\nArchitecture: amd64\nPriority: optional\nDescription: hi\n";
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(control.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, "./control", control.as_bytes()).unwrap();
        let tar = tar.into_inner().unwrap();
        let (name, member) = match compression {
            "gz" => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                std::io::Write::write_all(&mut e, &tar).unwrap();
                ("control.tar.gz", e.finish().unwrap())
            }
            "zst" => ("control.tar.zst", zstd::encode_all(&tar[..], 3).unwrap()),
            "xz" => {
                let mut out = Vec::new();
                lzma_rs::xz_compress(&mut &tar[..], &mut out).unwrap();
                ("control.tar.xz", out)
            }
            _ => ("control.tar", tar),
        };
        let mut ar = b"!<arch>\n".to_vec();
        let mut add = |name: &str, data: &[u8]| {
            ar.extend_from_slice(
                format!(
                    "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                    name,
                    0,
                    0,
                    0,
                    100644,
                    data.len()
                )
                .as_bytes(),
            );
            ar.extend_from_slice(data);
            if data.len() % 2 == 1 {
                ar.push(b'\n');
            }
        };
        add("debian-binary", b"2.0\n");
        add(name, &member);
        add("data.tar", b"x");
        let path = dir.join(format!("hello-{compression}.deb"));
        std::fs::write(&path, ar).unwrap();
        path
    }

    #[test]
    fn control_files_of_each_compression() {
        let dir = std::env::temp_dir().join(format!("osbuild-deb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for c in ["xz", "gz", "zst", "none"] {
            let text = control(&deb(&dir, c)).unwrap();
            assert_eq!(field(&text, "Package"), Some("hello"), "{c}");
            assert_eq!(field(&text, "Priority"), Some("optional"));
        }
        std::fs::write(dir.join("bad.deb"), "not a deb").unwrap();
        assert!(control(&dir.join("bad.deb"))
            .unwrap_err()
            .contains("not a Debian package"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stanzas_name_the_file() {
        assert_eq!(
            stanza("Package: a\nVersion: 1\n\n", "pool/a_1_all.deb", 3, "ab", None),
            "Package: a\nVersion: 1\nFilename: pool/a_1_all.deb\nSize: 3\nSHA256: ab\n\n"
        );
        assert_eq!(
            stanza(
                "Package: a\nPriority: important\nVersion: 1\n",
                "a.deb",
                3,
                "ab",
                Some("required")
            ),
            "Package: a\nVersion: 1\nPriority: required\nFilename: a.deb\nSize: 3\nSHA256: ab\n\n"
        );
    }
}

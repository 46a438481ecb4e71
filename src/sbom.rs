//! `osbuild sbom`: an SPDX 2.3 JSON document for each image, from its lock:
//! every package the image's package stages install (those of an earlier
//! image it starts from too), with its version, architecture, SHA256 and
//! package URL. Build roots' packages are not in the image and not listed.
//!
//! The document depends on the lock alone: `created` is the lock's
//! `source_date_epoch` and the namespace a UUID made from the content, so
//! the same lock always gives the same bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::cli::{finish, msg, Common, Failure};
use crate::manifest::{Manifest, Pipeline};
use osbuild_stages::lock::Locked;

pub struct SbomArgs {
    pub common: Common,
    pub input: PathBuf,
    pub defines: Vec<(String, String)>,
    /// Only this image (required on stdout when there are several).
    pub image: Option<String>,
    /// A file for one image's document, or a directory for `NAME.spdx.json` each.
    pub output: Option<PathBuf>,
}

/// One installed package, as the SBOM names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub sha256: String,
    /// The suite it came from (`bookworm`), or an RPM repository's id, for the package URL.
    pub suite: String,
    pub format: osbuild_stages::lock::Format,
}

pub fn sbom(args: SbomArgs) -> i32 {
    finish(sbom_inner(&args))
}

fn sbom_inner(args: &SbomArgs) -> Result<(), Failure> {
    let images = crate::lock::cli::images_of(&args.common, &args.input, &args.defines)?;
    let (images, _) =
        crate::lock::lock_images(&args.input, images, crate::lock::LockUse::Required).map_err(Failure::invalid)?;
    let lock = crate::lock::Lock::read(&crate::lock::path_for(&args.input)).map_err(Failure::invalid)?;
    let packages = image_packages(&images);
    let chosen: Vec<&(String, Vec<Package>)> = match &args.image {
        Some(want) => {
            let found: Vec<_> = packages.iter().filter(|(n, _)| n == want).collect();
            if found.is_empty() {
                let names: Vec<&str> = packages.iter().map(|(n, _)| n.as_str()).collect();
                return Err(Failure::invalid(msg(format!(
                    "there is no image {want}: the images are {}",
                    names.join(", ")
                ))));
            }
            found
        }
        None => packages.iter().collect(),
    };
    let out_dir = args.output.as_ref().filter(|o| o.is_dir() || chosen.len() > 1);
    match (&args.output, out_dir) {
        (_, Some(dir)) => {
            std::fs::create_dir_all(dir).map_err(|e| io_failure(dir, e))?;
            for (name, pkgs) in chosen {
                let path = dir.join(format!("{name}.spdx.json"));
                write(&path, &document(name, pkgs, lock.source_date_epoch))?;
                eprintln!("wrote {}: {} packages", path.display(), pkgs.len());
            }
        }
        (Some(file), None) => {
            let (name, pkgs) = chosen[0];
            write(file, &document(name, pkgs, lock.source_date_epoch))?;
            eprintln!("wrote {}: {} packages", file.display(), pkgs.len());
        }
        (None, None) => {
            if chosen.len() > 1 {
                let names: Vec<&str> = chosen.iter().map(|(n, _)| n.as_str()).collect();
                return Err(Failure::invalid(msg(format!(
                    "{} images ({}): name one with --image, or give -o DIR for all",
                    names.len(),
                    names.join(", ")
                ))));
            }
            let (name, pkgs) = chosen[0];
            println!("{}", pretty(&document(name, pkgs, lock.source_date_epoch)));
        }
    }
    Ok(())
}

/// Each locked image's packages: those of its own pipeline's package stages,
/// after those of the earlier image whose tree it starts from. A later stage's
/// pin of a name and architecture replaces an earlier one (an upgrade).
pub fn image_packages(images: &[(String, Manifest)]) -> Vec<(String, Vec<Package>)> {
    let mut trees: BTreeMap<String, Vec<Package>> = BTreeMap::new();
    let mut out = Vec::new();
    for (name, manifest) in images {
        let p = &manifest.pipeline;
        let mut pkgs = p.base.as_ref().and_then(|b| trees.get(b)).cloned().unwrap_or_default();
        for locked in p.stages.iter().filter_map(|s| s.options.get("locked")) {
            let Ok(locked) = serde_json::from_value::<Locked>(locked.clone()) else {
                continue;
            };
            for r in &locked.repositories {
                for pin in &r.packages {
                    let package = Package {
                        name: pin.name.clone(),
                        version: pin.version.clone(),
                        arch: pin.arch.clone(),
                        sha256: pin.sha256.clone(),
                        suite: r.suite.clone(),
                        format: r.format,
                    };
                    match pkgs.iter_mut().find(|q| q.name == pin.name && q.arch == pin.arch) {
                        Some(q) => *q = package,
                        None => pkgs.push(package),
                    }
                }
            }
        }
        remember(p, &pkgs, &mut trees);
        out.push((name.clone(), pkgs));
    }
    out
}

/// Keeps an image's packages under its tree's id and name, for images that
/// start from it.
fn remember(p: &Pipeline, pkgs: &[Package], trees: &mut BTreeMap<String, Vec<Package>>) {
    if let Some(id) = crate::plan::tree_id(p) {
        trees.insert(id, pkgs.to_vec());
    }
    if let Some(name) = &p.name {
        trees.insert(name.clone(), pkgs.to_vec());
    }
}

/// The SPDX 2.3 document of the image `name` with `packages`.
pub fn document(name: &str, packages: &[Package], source_date_epoch: u64) -> Value {
    let image_id = format!("SPDXRef-Image-{}", spdx_id_part(name));
    let mut spdx_packages = vec![json!({
        "SPDXID": image_id,
        "name": name,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "OPERATING-SYSTEM",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_id,
    })];
    for (i, p) in packages.iter().enumerate() {
        let id = format!("SPDXRef-Package-{}-{}", i + 1, spdx_id_part(&p.name));
        spdx_packages.push(json!({
            "SPDXID": id,
            "name": p.name,
            "versionInfo": p.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "supplier": "NOASSERTION",
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "checksums": [{"algorithm": "SHA256", "checksumValue": p.sha256}],
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl(p),
            }],
        }));
        relationships.push(json!({
            "spdxElementId": image_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "creationInfo": {
            "created": rfc3339(source_date_epoch),
            "creators": [format!("Tool: osbuild-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": spdx_packages,
        "relationships": relationships,
    });
    // A namespace unique to this content: the same lock gives the same one.
    let content = serde_json::to_string(&doc).expect("JSON always serializes");
    let uuid = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, content.as_bytes());
    doc["documentNamespace"] = json!(format!("urn:uuid:{uuid}"));
    doc
}

/// The package URL: `pkg:deb/debian/NAME@VERSION?arch=ARCH&distro=SUITE` for
/// a Debian package, `pkg:rpm/REPOSITORY/NAME@VERSION?arch=ARCH` for an RPM.
pub fn purl(p: &Package) -> String {
    match p.format {
        osbuild_stages::lock::Format::Deb => format!(
            "pkg:deb/debian/{}@{}?arch={}&distro={}",
            percent(&p.name),
            percent(&p.version),
            percent(&p.arch),
            percent(p.suite.trim_end_matches('/'))
        ),
        osbuild_stages::lock::Format::Rpm => format!(
            "pkg:rpm/{}/{}@{}?arch={}",
            percent(&p.suite),
            percent(&p.name),
            percent(&p.version),
            percent(&p.arch)
        ),
    }
}

/// Percent-encodes what a package URL component may not hold as is
/// (`+` and `:` in Debian versions, among others).
fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What an SPDX id may hold: letters, digits, `.` and `-`.
fn spdx_id_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn rfc3339(secs: u64) -> String {
    chrono::DateTime::from_timestamp(secs as i64, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn pretty(doc: &Value) -> String {
    serde_json::to_string_pretty(doc).expect("JSON always serializes")
}

fn write(path: &Path, doc: &Value) -> Result<(), Failure> {
    std::fs::write(path, pretty(doc) + "\n").map_err(|e| io_failure(path, e))
}

fn io_failure(path: &Path, e: std::io::Error) -> Failure {
    Failure::failed(msg(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, version: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            sha256: "ab".repeat(32),
            suite: "bookworm".into(),
            format: osbuild_stages::lock::Format::Deb,
        }
    }

    #[test]
    fn a_document_names_every_package_with_its_checksum_and_purl() {
        let pkgs = [
            package("libc6", "2.36-9+deb12u13"),
            package("login", "1:4.13+dfsg1-1+deb12u1"),
        ];
        let doc = document("web staging", &pkgs, 1_783_764_997);
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(doc["creationInfo"]["created"], "2026-07-11T10:16:37Z");
        assert_eq!(doc["packages"][0]["SPDXID"], "SPDXRef-Image-web-staging");
        assert_eq!(doc["packages"].as_array().unwrap().len(), 3);
        let login = &doc["packages"][2];
        assert_eq!(login["versionInfo"], "1:4.13+dfsg1-1+deb12u1");
        assert_eq!(
            login["externalRefs"][0]["referenceLocator"],
            "pkg:deb/debian/login@1%3A4.13%2Bdfsg1-1%2Bdeb12u1?arch=amd64&distro=bookworm"
        );
        assert_eq!(login["checksums"][0]["checksumValue"], "ab".repeat(32));
        let contains = doc["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["relationshipType"] == "CONTAINS")
            .count();
        assert_eq!(contains, 2);
        // The same input, the same document (namespace included); another, another.
        assert_eq!(doc, document("web staging", &pkgs, 1_783_764_997));
        assert_ne!(
            doc["documentNamespace"],
            document("web staging", &pkgs[..1], 1_783_764_997)["documentNamespace"]
        );
        assert!(doc["documentNamespace"].as_str().unwrap().starts_with("urn:uuid:"));
    }
}

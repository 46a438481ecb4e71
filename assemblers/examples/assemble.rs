//! Times the qemu assembler on a tree of your own, outside any sandbox:
//! `cargo run --release -p osbuild-assemblers --example assemble -- TREE [FORMAT[:COMPRESSION]]...`
//! (default `raw qcow2:zlib qcow2:zstd`). Prints one line per image: its
//! format, seconds and size. `bench/assemble.sh` runs it round by round.

use std::path::PathBuf;
use std::time::Instant;

use osbuild_stages::Context;
use serde_json::json;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(tree) = args.next().map(PathBuf::from) else {
        eprintln!("usage: assemble TREE [FORMAT[:COMPRESSION]]...");
        std::process::exit(2);
    };
    let mut formats: Vec<String> = args.collect();
    if formats.is_empty() {
        formats = ["raw", "qcow2:zlib", "qcow2:zstd"].map(String::from).to_vec();
    }
    let qemu = osbuild_assemblers::all()
        .into_iter()
        .find(|a| a.name == "org.osbuild.qemu")
        .expect("the qemu assembler is built in");
    let out = std::env::temp_dir().join(format!("osbuild-assemble-bench-{}", std::process::id()));
    for spec in &formats {
        let (format, compression) = spec.split_once(':').unwrap_or((spec, "zlib"));
        std::fs::create_dir_all(&out).expect("a scratch directory");
        let filename = format!("bench.{format}");
        let mut options = json!({
            "format": format, "filename": filename,
            "ptuuid": "0x14fc63d2", "root_fs_uuid": "76a22bf4-f153-4541-b6c7-0332c0dfaeac"
        });
        if format == "qcow2" {
            options["qcow2_compression"] = json!(compression);
        }
        let ctx = Context {
            tree: tree.clone(),
            output_dir: Some(out.clone()),
            cache: None,
            sources: None,
            assembly: Default::default(),
        };
        let started = Instant::now();
        let result = qemu.run(&ctx, &options);
        let seconds = started.elapsed().as_secs_f64();
        let size = std::fs::metadata(out.join(&filename)).map(|m| m.len()).unwrap_or(0);
        let _ = std::fs::remove_dir_all(&out);
        if let Err(e) = result {
            eprintln!("{spec}: {e}");
            std::process::exit(1);
        }
        println!("{spec} {seconds:.2} {size}");
    }
}

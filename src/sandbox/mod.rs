// TEMPORARY STUB (compile-check only)
use std::path::PathBuf;
pub enum BuildRoot {
    Host,
    Layers(Vec<PathBuf>),
}
pub enum Tree {
    Writable {
        lower: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
    },
    ReadOnly {
        lower: Vec<PathBuf>,
    },
}
pub struct Spec {
    pub build_root: BuildRoot,
    pub tree: Tree,
    pub output: Option<PathBuf>,
    pub libdir: Option<PathBuf>,
    pub network: bool,
    pub scratch: PathBuf,
}
pub enum Payload {
    Exec {
        argv: Vec<String>,
        stdin: Vec<u8>,
        env: Vec<(String, String)>,
    },
    Call(Box<dyn FnOnce() -> i32>),
}
pub struct Running;
pub fn spawn(_spec: &Spec, _payload: Payload) -> std::io::Result<Running> {
    todo!()
}
impl Running {
    pub fn log(&self) -> std::os::fd::BorrowedFd<'_> {
        todo!()
    }
    pub fn kill(&self) {}
    pub fn wait(self) -> std::io::Result<i32> {
        todo!()
    }
}

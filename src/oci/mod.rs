//! OCI registries and formats: the store's objects as OCI artifacts in a
//! shared cache ([`cache`]), stored trees as OCI images ([`export`]), both
//! over [`remote`] and the layer tars of [`layer`].

pub mod cache;
pub mod digest;
pub mod export;
pub mod layer;
pub mod remote;

pub use cache::{Cache, CacheError, Pulled};
pub use remote::Target;

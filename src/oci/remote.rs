//! One repository of an OCI registry, spoken to through `oci-client` (the
//! OCI distribution API, as Harbor, Quay, GHCR and distribution serve it).
//!
//! `oci-client` is async; builds are not. A [`Remote`] owns a current-thread
//! tokio runtime and blocks on each call, so between calls no thread of
//! ours runs: a sandbox may fork safely at any time outside them.
//!
//! Credentials are the user's Docker ones (`$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json`, credential helpers included), as other tools
//! read them. TLS is required, except for a registry on a loopback address
//! or with `--insecure`.

use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::path::Path;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{OciDescriptor, OciImageManifest, OCI_IMAGE_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

/// Where `--cache` or `export` points: `oci://HOST[:PORT]/REPOSITORY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub registry: String,
    pub repository: String,
    /// Plain HTTP is allowed to a registry that is not on loopback.
    pub insecure: bool,
}

impl Target {
    pub fn parse(url: &str, insecure: bool) -> Result<Target, String> {
        let rest = url
            .strip_prefix("oci://")
            .ok_or_else(|| format!("{url:?} is not an oci://HOST[:PORT]/REPOSITORY address"))?;
        let (registry, repository) = rest
            .split_once('/')
            .filter(|(r, p)| !r.is_empty() && !p.is_empty())
            .ok_or_else(|| format!("{url:?} names no repository: oci://HOST[:PORT]/REPOSITORY"))?;
        let repository = repository.trim_end_matches('/');
        // The reference grammar decides what a repository name may be.
        let probe = format!("{registry}/{repository}:probe");
        let parsed: Reference = probe
            .parse()
            .map_err(|e| format!("{url:?} is not a registry repository: {e}"))?;
        if parsed.registry() != registry || parsed.repository() != repository {
            return Err(format!(
                "{url:?}: the repository must be lower case, and the host come first (oci://HOST[:PORT]/REPOSITORY)"
            ));
        }
        Ok(Target {
            registry: registry.to_string(),
            repository: repository.to_string(),
            insecure,
        })
    }

    /// Whether the registry's host is this machine.
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => self.registry.rsplit_once(':').map_or(&*self.registry, |(h, _)| h),
        };
        host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// Whether it may be spoken to without TLS: only on this machine, or
    /// when the user said so.
    pub fn plain_http(&self) -> bool {
        self.insecure || self.is_loopback()
    }

    fn reference(&self, tag: &str) -> Reference {
        Reference::with_tag(self.registry.clone(), self.repository.clone(), tag.to_string())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oci://{}/{}", self.registry, self.repository)
    }
}

/// A failed registry call, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{target}: {what}: {message}")]
pub struct RemoteError {
    pub target: String,
    pub what: String,
    pub message: String,
}

pub struct Remote {
    pub target: Target,
    runtime: tokio::runtime::Runtime,
    client: Client,
    auth: RegistryAuth,
}

impl Remote {
    /// Sets up the client; nothing is sent until the first call.
    pub fn connect(target: &Target) -> Result<Remote, RemoteError> {
        let fail = |what: &str, message: String| RemoteError {
            target: target.to_string(),
            what: what.to_string(),
            message,
        };
        // Installed once per process; a second install is refused, harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail("starting the client", e.to_string()))?;
        let protocol = if target.plain_http() {
            ClientProtocol::HttpsExcept(vec![target.registry.clone()])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            read_timeout: Some(std::time::Duration::from_secs(300)),
            ..Default::default()
        };
        let client = Client::try_from(config).map_err(|e| fail("starting the client", e.to_string()))?;
        Ok(Remote {
            target: target.clone(),
            runtime,
            client,
            auth: credentials(&target.registry),
        })
    }

    fn error(&self, what: impl Into<String>, e: impl fmt::Display) -> RemoteError {
        RemoteError {
            target: self.target.to_string(),
            what: what.into(),
            message: e.to_string(),
        }
    }

    /// The image manifest tagged `tag`, with its digest; `None` when there is none.
    pub fn manifest(&self, tag: &str) -> Result<Option<(OciImageManifest, String)>, RemoteError> {
        let reference = self.target.reference(tag);
        match self
            .runtime
            .block_on(self.client.pull_image_manifest(&reference, &self.auth))
        {
            Ok(found) => Ok(Some(found)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(self.error(format!("reading the manifest {tag}"), e)),
        }
    }

    /// Whether a manifest is tagged `tag` (a HEAD request).
    pub fn has(&self, tag: &str) -> Result<bool, RemoteError> {
        let reference = self.target.reference(tag);
        match self
            .runtime
            .block_on(self.client.fetch_manifest_digest(&reference, &self.auth))
        {
            Ok(_) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(self.error(format!("looking up {tag}"), e)),
        }
    }

    /// A blob of at most `max` bytes, into memory, checked against its digest.
    pub fn blob(&self, blob: &OciDescriptor, max: u64) -> Result<Vec<u8>, RemoteError> {
        if blob.size < 0 || blob.size as u64 > max {
            return Err(self.error(
                format!("reading the blob {}", blob.digest),
                format!("it is {} bytes, more than the {max} it may be", blob.size),
            ));
        }
        let reference = self.target.reference("blob");
        let mut out = Vec::with_capacity(blob.size as usize);
        self.runtime
            .block_on(self.client.pull_blob(&reference, blob, &mut out))
            .map_err(|e| self.error(format!("reading the blob {}", blob.digest), e))?;
        Ok(out)
    }

    /// A blob into the file `path`; `oci-client` checks it against its digest.
    pub fn blob_to_file(&self, blob: &OciDescriptor, path: &Path) -> Result<(), RemoteError> {
        let reference = self.target.reference("blob");
        let what = || format!("reading the blob {}", blob.digest);
        self.runtime
            .block_on(async {
                let mut file = tokio::fs::File::create(path).await?;
                self.client.pull_blob(&reference, blob, &mut file).await?;
                file.sync_all().await?;
                Ok::<_, OciDistributionError>(())
            })
            .map_err(|e| self.error(what(), e))
    }

    /// Uploads the blob `bytes` unless the registry has it already.
    pub fn push_blob(&self, bytes: Vec<u8>, digest: &str) -> Result<(), RemoteError> {
        let reference = self.target.reference("blob");
        let what = || format!("uploading the blob {digest}");
        self.runtime
            .block_on(async {
                if !self.has_blob(&reference, digest).await? {
                    self.client.push_blob(&reference, bytes, digest).await?;
                }
                Ok::<_, OciDistributionError>(())
            })
            .map_err(|e| self.error(what(), e))
    }

    /// Uploads the file at `path` as the blob `digest` unless the registry
    /// has it already, a few MiB at a time.
    pub fn push_blob_file(&self, path: &Path, digest: &str) -> Result<(), RemoteError> {
        let reference = self.target.reference("blob");
        let what = || format!("uploading the blob {digest}");
        let file = std::fs::File::open(path).map_err(|e| self.error(what(), e))?;
        self.runtime
            .block_on(async {
                if self.has_blob(&reference, digest).await? {
                    return Ok(());
                }
                let chunks = futures_util::stream::unfold(Some(file), |file| async move {
                    let mut file = file?;
                    let mut buf = vec![0u8; 4 << 20];
                    let mut filled = 0;
                    while filled < buf.len() {
                        match file.read(&mut buf[filled..]) {
                            Ok(0) => break,
                            Ok(n) => filled += n,
                            Err(e) => return Some((Err(OciDistributionError::IoError(e)), None)),
                        }
                    }
                    if filled == 0 {
                        return None;
                    }
                    buf.truncate(filled);
                    Some((Ok(bytes::Bytes::from(buf)), Some(file)))
                });
                self.client.push_blob_stream(&reference, chunks, digest, None).await?;
                Ok::<_, OciDistributionError>(())
            })
            .map_err(|e| self.error(what(), e))
    }

    async fn has_blob(&self, reference: &Reference, digest: &str) -> Result<bool, OciDistributionError> {
        self.client
            .store_auth_if_needed(reference.resolve_registry(), &self.auth)
            .await;
        self.client.blob_exists(reference, digest).await
    }

    /// Tags `manifest` as `tag`; its blobs must be uploaded. Its digest:
    /// of the bytes sent, which are `serde_json`'s, as an OCI layout of the
    /// same image has them.
    pub fn push_manifest(&self, tag: &str, manifest: OciImageManifest) -> Result<String, RemoteError> {
        let reference = self.target.reference(tag);
        let body = serde_json::to_vec(&manifest).expect("JSON serializes");
        let digest = super::digest::of(&body);
        let content_type = http::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE);
        self.runtime
            .block_on(async {
                self.client
                    .store_auth_if_needed(reference.resolve_registry(), &self.auth)
                    .await;
                self.client.push_manifest_raw(&reference, body, content_type).await
            })
            .map_err(|e| self.error(format!("tagging {tag}"), e))?;
        Ok(digest)
    }
}

/// The user's Docker credentials for `registry`; anonymous without any.
fn credentials(registry: &str) -> RegistryAuth {
    match docker_credential::get_credential(registry) {
        Ok(docker_credential::DockerCredential::UsernamePassword(user, password)) => {
            RegistryAuth::Basic(user, password)
        }
        Ok(docker_credential::DockerCredential::IdentityToken(_)) => {
            eprintln!(
                "warning: the Docker configuration has an identity token for {registry}, which osbuild cannot \
                 use; going on without credentials (`docker login` with a password or access token works)"
            );
            RegistryAuth::Anonymous
        }
        Err(_) => RegistryAuth::Anonymous,
    }
}

/// Whether a registry said "no such manifest" (in one of its several ways).
fn not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().all(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NotFound | OciErrorCode::NameUnknown
            )
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("oci://127.0.0.1:5000/osbuild/cache", false).unwrap();
        assert_eq!(
            (t.registry.as_str(), t.repository.as_str()),
            ("127.0.0.1:5000", "osbuild/cache")
        );
        assert!(t.is_loopback());
        assert_eq!(t.to_string(), "oci://127.0.0.1:5000/osbuild/cache");
        assert!(Target::parse("oci://localhost/c", false).unwrap().is_loopback());
        let v6 = Target {
            registry: "[::1]:5000".into(),
            ..t.clone()
        };
        assert!(v6.is_loopback());
        let remote = Target::parse("oci://registry.example:443/c", false).unwrap();
        assert!(!remote.is_loopback() && !remote.plain_http(), "TLS off this machine");
        assert!(Target::parse("oci://registry.example:443/c", true)
            .unwrap()
            .plain_http());
        assert!(t.plain_http());
        for bad in [
            "127.0.0.1:5000/c",
            "oci://127.0.0.1:5000",
            "oci://127.0.0.1:5000/",
            "oci://h.example/Upper",
        ] {
            assert!(Target::parse(bad, false).is_err(), "{bad}");
        }
    }
}

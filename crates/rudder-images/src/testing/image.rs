//! Test images built in memory, deterministically (fixed mtimes, owners and order; gzip
//! without a timestamp), so their digests are stable on a given machine:
//! - [`busybox`]: Debian's static busybox as `/bin/busybox` with applet symlinks, users
//!   root(0), app(1000) and nobody(65534), `/tmp` 1777, `/var/www/index.html`; Cmd `["sh"]`;
//! - [`ImageBuilder`]: more layers, other compressions, config fields, architectures, docker
//!   media types;
//! - writers for OCI-layout and docker-archive tarballs of a [`TestImage`].

use std::io::Write;
use std::sync::OnceLock;

use super::TestingError;
use crate::digest::Digest;
use crate::layer::Compression;
use crate::manifest::{self, ImageConfig};

/// Where the busybox binary comes from (Debian's busybox-static).
pub const BUSYBOX_PATH: &str = "/usr/bin/busybox";

/// Applets linked to `/bin/busybox`.
pub const APPLETS: &[&str] = &[
    "[",
    "[[",
    "awk",
    "base64",
    "basename",
    "cat",
    "chmod",
    "chown",
    "cp",
    "cut",
    "date",
    "dd",
    "df",
    "dirname",
    "du",
    "echo",
    "env",
    "expr",
    "false",
    "find",
    "free",
    "grep",
    "gunzip",
    "gzip",
    "head",
    "hostname",
    "httpd",
    "id",
    "ip",
    "kill",
    "killall",
    "ln",
    "ls",
    "md5sum",
    "mkdir",
    "mkfifo",
    "mktemp",
    "mount",
    "mv",
    "nc",
    "netstat",
    "nslookup",
    "pidof",
    "ping",
    "printenv",
    "printf",
    "ps",
    "pwd",
    "readlink",
    "realpath",
    "rm",
    "rmdir",
    "sed",
    "seq",
    "sh",
    "sha256sum",
    "sleep",
    "sort",
    "stat",
    "sync",
    "tail",
    "tar",
    "tee",
    "test",
    "timeout",
    "top",
    "touch",
    "tr",
    "true",
    "umount",
    "uname",
    "uniq",
    "uptime",
    "usleep",
    "wc",
    "wget",
    "which",
    "whoami",
    "xargs",
    "yes",
];

pub const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const MTIME: u64 = 1_700_000_000;

/// One entry of a test layer.
#[derive(Clone, Debug)]
pub enum Entry {
    Dir { path: String, mode: u32, uid: u64 },
    File { path: String, mode: u32, uid: u64, content: Vec<u8> },
    Symlink { path: String, target: String },
}

impl Entry {
    pub fn dir(path: &str, mode: u32) -> Self {
        Entry::Dir { path: path.into(), mode, uid: 0 }
    }

    pub fn file(path: &str, content: &[u8]) -> Self {
        Entry::File { path: path.into(), mode: 0o644, uid: 0, content: content.to_vec() }
    }
}

/// A tar stream of `entries`, in order, with fixed metadata.
pub fn tar_layer(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(MTIME);
        let (path, data): (&str, &[u8]) = match e {
            Entry::Dir { path, mode, uid } => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_uid(*uid);
                h.set_gid(*uid);
                (path, &[])
            }
            Entry::File { path, mode, uid, content } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_uid(*uid);
                h.set_gid(*uid);
                (path, content)
            }
            Entry::Symlink { path, target } => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_uid(0);
                h.set_gid(0);
                h.set_size(0);
                b.append_link(&mut h, path, target).expect("tar symlink in memory");
                continue;
            }
        };
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).expect("tar entry in memory");
    }
    b.into_inner().expect("tar in memory")
}

/// `printenv [NAME...]` in sh: every variable, or the named ones (exit 1 if one is unset).
const PRINTENV_SCRIPT: &[u8] = b"#!/bin/sh\nif [ $# -eq 0 ]; then exec env; fi\nrc=0\nfor name in \"$@\"; do\n  if eval \"[ -n \\\"\\${$name+x}\\\" ]\"; then eval \"printf '%s\\\\n' \\\"\\$$name\\\"\"; else rc=1; fi\ndone\nexit $rc\n";

/// The busybox root filesystem as a tar stream (built once per process).
pub fn busybox_rootfs_tar() -> Result<&'static [u8], TestingError> {
    static TAR: OnceLock<Vec<u8>> = OnceLock::new();
    if let Some(t) = TAR.get() {
        return Ok(t);
    }
    let busybox = std::fs::read(BUSYBOX_PATH)
        .map_err(|e| TestingError::Io { what: BUSYBOX_PATH.into(), source: e })?;
    let mut entries = Vec::new();
    for (dir, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("run", 0o755),
        ("sbin", 0o755),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("var", 0o755),
        ("var/www", 0o755),
    ] {
        entries.push(Entry::dir(dir, mode));
    }
    entries.push(Entry::Dir { path: "home/app".into(), mode: 0o755, uid: 1000 });
    entries.push(Entry::File { path: "bin/busybox".into(), mode: 0o755, uid: 0, content: busybox });
    for applet in APPLETS.iter().filter(|a| **a != "printenv") {
        entries.push(Entry::Symlink { path: format!("bin/{applet}"), target: "busybox".into() });
    }
    // Debian's busybox-static has no printenv applet (the seeds' Jobs use it): a script.
    entries.push(Entry::File {
        path: "bin/printenv".into(),
        mode: 0o755,
        uid: 0,
        content: PRINTENV_SCRIPT.to_vec(),
    });
    entries.push(Entry::file(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    ));
    entries.push(Entry::file("etc/group", b"root:x:0:\napp:x:1000:\nnobody:x:65534:\n"));
    entries.push(Entry::file("var/www/index.html", b"hello from rudder's busybox test image\n"));
    Ok(TAR.get_or_init(|| tar_layer(&entries)))
}

/// A compressed layer blob.
pub fn compress(tar: &[u8], compression: Compression) -> Vec<u8> {
    match compression {
        Compression::None => tar.to_vec(),
        Compression::Gzip => {
            let mut enc =
                flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::fast());
            enc.write_all(tar).expect("gzip in memory");
            enc.finish().expect("gzip in memory")
        }
        Compression::Zstd => {
            ruzstd::encoding::compress_to_vec(tar, ruzstd::encoding::CompressionLevel::Fastest)
        }
    }
}

#[derive(Clone, Debug)]
pub struct TestLayer {
    pub media_type: String,
    pub blob: Vec<u8>,
    pub digest: Digest,
    pub diff_id: Digest,
}

/// An image as a registry holds it: layer blobs, config and manifest bytes.
#[derive(Clone, Debug)]
pub struct TestImage {
    pub layers: Vec<TestLayer>,
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub config_media_type: &'static str,
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub manifest_media_type: &'static str,
    pub architecture: String,
}

pub struct ImageBuilder {
    layers: Vec<(Vec<u8>, Compression)>,
    config: ImageConfig,
    architecture: String,
    docker: bool,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        ImageBuilder {
            layers: Vec::new(),
            config: ImageConfig { env: vec![PATH_ENV.into()], ..Default::default() },
            architecture: "amd64".into(),
            docker: false,
        }
    }
}

impl ImageBuilder {
    /// An image without layers yet; Env is PATH.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the busybox root filesystem as a layer, and Cmd `["sh"]`.
    pub fn busybox(mut self, compression: Compression) -> Result<Self, TestingError> {
        self.layers.push((busybox_rootfs_tar()?.to_vec(), compression));
        self.config.cmd = vec!["sh".into()];
        Ok(self)
    }

    /// Adds a layer from a tar stream.
    pub fn layer(mut self, tar: Vec<u8>, compression: Compression) -> Self {
        self.layers.push((tar, compression));
        self
    }

    /// Adds a layer holding these files (mode 0644, root-owned).
    pub fn files(self, files: &[(&str, &[u8])], compression: Compression) -> Self {
        let entries: Vec<Entry> = files.iter().map(|(p, c)| Entry::file(p, c)).collect();
        self.layer(tar_layer(&entries), compression)
    }

    pub fn config(mut self, edit: impl FnOnce(&mut ImageConfig)) -> Self {
        edit(&mut self.config);
        self
    }

    pub fn architecture(mut self, architecture: &str) -> Self {
        self.architecture = architecture.into();
        self
    }

    /// Docker v2 schema2 media types instead of OCI's.
    pub fn docker_media_types(mut self) -> Self {
        self.docker = true;
        self
    }

    pub fn build(self) -> TestImage {
        let mut layers = Vec::new();
        for (tar, compression) in &self.layers {
            let blob = compress(tar, *compression);
            let media_type = match (self.docker, compression) {
                (true, Compression::Gzip) => "application/vnd.docker.image.rootfs.diff.tar.gzip",
                (true, Compression::None) => "application/vnd.docker.image.rootfs.diff.tar",
                _ => compression.oci_media_type(),
            };
            layers.push(TestLayer {
                media_type: media_type.into(),
                digest: Digest::of(&blob),
                diff_id: Digest::of(tar),
                blob,
            });
        }
        let c = &self.config;
        let mut config = serde_json::json!({
            "Env": c.env,
            "WorkingDir": c.working_dir,
            "User": c.user,
        });
        if !c.cmd.is_empty() {
            config["Cmd"] = serde_json::json!(c.cmd);
        }
        if !c.entrypoint.is_empty() {
            config["Entrypoint"] = serde_json::json!(c.entrypoint);
        }
        if !c.exposed_ports.is_empty() {
            let ports: serde_json::Map<String, serde_json::Value> =
                c.exposed_ports.iter().map(|p| (p.clone(), serde_json::json!({}))).collect();
            config["ExposedPorts"] = serde_json::Value::Object(ports);
        }
        let config = serde_json::json!({
            "architecture": self.architecture,
            "os": "linux",
            "created": "2023-11-14T22:13:20Z",
            "config": config,
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.diff_id.as_str()).collect::<Vec<_>>(),
            },
        });
        let config = serde_json::to_vec(&config).expect("config JSON");
        let (manifest_media_type, config_media_type) = if self.docker {
            (manifest::DOCKER_MANIFEST, manifest::DOCKER_CONFIG)
        } else {
            (manifest::OCI_MANIFEST, manifest::OCI_CONFIG)
        };
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest_media_type,
            "config": {
                "mediaType": config_media_type,
                "digest": Digest::of(&config).as_str(),
                "size": config.len(),
            },
            "layers": layers.iter().map(|l| serde_json::json!({
                "mediaType": l.media_type,
                "digest": l.digest.as_str(),
                "size": l.blob.len(),
            })).collect::<Vec<_>>(),
        });
        let manifest = serde_json::to_vec(&manifest).expect("manifest JSON");
        TestImage {
            layers,
            config_digest: Digest::of(&config),
            config,
            config_media_type,
            manifest_digest: Digest::of(&manifest),
            manifest,
            manifest_media_type,
            architecture: self.architecture,
        }
    }
}

/// The busybox test image: one gzip layer, Cmd `["sh"]`, Env PATH.
pub fn busybox() -> Result<TestImage, TestingError> {
    Ok(ImageBuilder::new().busybox(Compression::Gzip)?.build())
}

fn append(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) -> Result<(), TestingError> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_mtime(MTIME);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, path, data)
        .map_err(|e| TestingError::Io { what: format!("tar entry {path}"), source: e })
}

/// An OCI image layout tarball holding `image`, listed in `index.json` once per name (the
/// full reference in `io.containerd.image.name`, the tag in
/// `org.opencontainers.image.ref.name`), or once without annotations when `names` is empty.
pub fn oci_layout_tar(image: &TestImage, names: &[&str]) -> Result<Vec<u8>, TestingError> {
    let mut b = tar::Builder::new(Vec::new());
    append(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let descriptor = |name: Option<&str>| {
        let mut d = serde_json::json!({
            "mediaType": image.manifest_media_type,
            "digest": image.manifest_digest.as_str(),
            "size": image.manifest.len(),
        });
        if let Some(n) = name {
            let tag = n.rsplit_once(':').map_or("latest", |(_, t)| t);
            d["annotations"] = serde_json::json!({
                "io.containerd.image.name": n,
                "org.opencontainers.image.ref.name": tag,
            });
        }
        d
    };
    let manifests: Vec<serde_json::Value> = if names.is_empty() {
        vec![descriptor(None)]
    } else {
        names.iter().map(|n| descriptor(Some(n))).collect()
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_INDEX,
        "manifests": manifests,
    });
    append(&mut b, "index.json", &serde_json::to_vec(&index).expect("index JSON"))?;
    let mut blobs =
        vec![(&image.manifest_digest, &image.manifest), (&image.config_digest, &image.config)];
    blobs.extend(image.layers.iter().map(|l| (&l.digest, &l.blob)));
    blobs.sort_by_key(|(d, _)| d.as_str().to_owned());
    blobs.dedup_by_key(|(d, _)| d.as_str().to_owned());
    for (digest, data) in blobs {
        append(&mut b, &format!("blobs/sha256/{}", digest.hex()), data)?;
    }
    b.into_inner().map_err(|e| TestingError::Io { what: "tar".into(), source: e })
}

/// A `docker save` tarball: `manifest.json`, `<config hex>.json`, `<n>/layer.tar` (the
/// layer blobs as they are, so gzip'd layers stay gzip'd).
pub fn docker_archive_tar(image: &TestImage, repo_tags: &[&str]) -> Result<Vec<u8>, TestingError> {
    let mut b = tar::Builder::new(Vec::new());
    let config_name = format!("{}.json", image.config_digest.hex());
    append(&mut b, &config_name, &image.config)?;
    let mut layer_names = Vec::new();
    for (i, l) in image.layers.iter().enumerate() {
        let name = format!("{i:064x}/layer.tar");
        append(&mut b, &name, &l.blob)?;
        layer_names.push(name);
    }
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": repo_tags,
        "Layers": layer_names,
    }]);
    append(&mut b, "manifest.json", &serde_json::to_vec(&manifest).expect("manifest JSON"))?;
    b.into_inner().map_err(|e| TestingError::Io { what: "tar".into(), source: e })
}

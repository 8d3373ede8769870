//! Volumes prepared on the real filesystem (as root: tmpfs mounts), refreshed and torn down,
//! against an in-memory object source. Each test works in its own temporary directory and
//! checks that nothing stays mounted.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapProjection, ConfigMapVolumeSource, Container, DownwardAPIProjection,
    DownwardAPIVolumeFile, DownwardAPIVolumeSource, EmptyDirVolumeSource, HostPathVolumeSource,
    KeyToPath, ObjectFieldSelector, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimStatus, PersistentVolumeClaimVolumeSource,
    PersistentVolumeSpec, Pod, PodSpec, ProjectedVolumeSource, ResourceFieldSelector, Secret,
    SecretProjection, SecretVolumeSource, ServiceAccountTokenProjection, Volume, VolumeMount,
    VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;
use rudder_client::clock::ManualClock;
use rudder_kubelet_inputs::volumes::mount::mount_points;
use rudder_kubelet_inputs::{MemorySource, NodeInfoForVolumes, VolumeError, VolumeManager};
use rudder_runtime::{Mount, MountSource};

fn pod(uid: &str, volumes: Vec<Volume>) -> Pod {
    let mut pod = Pod::default();
    pod.metadata.name = Some("p".into());
    pod.metadata.namespace = Some("ns".into());
    pod.metadata.uid = Some(uid.into());
    pod.metadata.labels = Some([("app".into(), "web".into())].into());
    pod.spec = Some(PodSpec {
        containers: vec![Container { name: "c".into(), ..Default::default() }],
        volumes: Some(volumes),
        service_account_name: Some("runner".into()),
        ..Default::default()
    });
    pod
}

fn vol(name: &str) -> Volume {
    Volume { name: name.into(), ..Default::default() }
}

fn node() -> NodeInfoForVolumes {
    NodeInfoForVolumes {
        node_name: "n1".into(),
        allocatable: [
            ("cpu".into(), Quantity("2".into())),
            ("memory".into(), Quantity("1Gi".into())),
        ]
        .into(),
    }
}

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.namespace = Some("ns".into());
    cm.metadata.name = Some(name.into());
    cm.data = Some(data.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect());
    cm
}

fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    let mut s = Secret::default();
    s.metadata.namespace = Some("ns".into());
    s.metadata.name = Some(name.into());
    s.data =
        Some(data.iter().map(|(k, v)| ((*k).into(), ByteString(v.as_bytes().to_vec()))).collect());
    s
}

fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
    KeyToPath { key: key.into(), path: path.into(), mode }
}

/// (fs type, super options) of the mount at `path`.
fn mount_of(path: &Path) -> Option<(String, String)> {
    let path = std::fs::canonicalize(path).ok()?;
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        if Path::new(fields[4]) != path {
            return None;
        }
        let dash = fields.iter().position(|f| *f == "-")?;
        Some((fields[dash + 1].to_owned(), fields[dash + 3].to_owned()))
    })
}

fn mounted_under(dir: &Path) -> Vec<PathBuf> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    mount_points().unwrap().into_iter().filter(|m| m.starts_with(&dir)).collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

struct Fixture {
    dir: tempfile::TempDir,
    manager: VolumeManager,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::Builder::new().prefix("kubelet-inputs-").tempdir().unwrap();
        let manager = VolumeManager::new(dir.path().join("pods"));
        Fixture { dir, manager }
    }

    fn volume_dir(&self, uid: &str, plugin: &str, name: &str) -> PathBuf {
        self.dir.path().join("pods").join(uid).join("volumes").join(plugin).join(name)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Never leave a mount behind, even when a test fails half-way.
        let _ = rudder_kubelet_inputs::volumes::mount::unmount_all_under(self.dir.path());
    }
}

#[tokio::test]
async fn empty_dirs_on_disk_and_memory_then_teardown() {
    let f = Fixture::new();
    let mut mem = vol("cache");
    mem.empty_dir = Some(EmptyDirVolumeSource {
        medium: Some("Memory".into()),
        size_limit: Some(Quantity("16Mi".into())),
    });
    let mut disk = vol("scratch");
    disk.empty_dir = Some(EmptyDirVolumeSource::default());
    let p = pod("uid-empty", vec![mem, disk]);
    let source = MemorySource::new();
    let volumes = f.manager.setup(&p, &source, &node()).await.unwrap();
    let mem_dir = f.volume_dir("uid-empty", "kubernetes.io~empty-dir", "cache");
    let disk_dir = f.volume_dir("uid-empty", "kubernetes.io~empty-dir", "scratch");
    assert_eq!(volumes.get("cache").unwrap().host_path, mem_dir);
    let (fs, options) = mount_of(&mem_dir).expect("tmpfs mounted");
    assert_eq!(fs, "tmpfs");
    assert!(options.contains("size=16384k") && options.contains("mode=777"), "{options}");
    assert_eq!(mount_of(&disk_dir), None);
    assert_eq!(mode(&disk_dir), 0o777);
    // Idempotent: a second setup mounts nothing more.
    std::fs::write(mem_dir.join("data"), "kept").unwrap();
    f.manager.setup(&p, &source, &node()).await.unwrap();
    assert_eq!(mounted_under(f.dir.path()).len(), 1);
    assert_eq!(read(&mem_dir.join("data")), "kept");
    assert_eq!(f.manager.list_pod_uids().unwrap(), vec!["uid-empty".to_owned()]);

    f.manager.teardown("uid-empty").await.unwrap();
    assert!(mounted_under(f.dir.path()).is_empty());
    assert!(!f.dir.path().join("pods/uid-empty").exists());
    assert!(f.manager.list_pod_uids().unwrap().is_empty());
    // Tearing down what is gone is fine.
    f.manager.teardown("uid-empty").await.unwrap();
    assert!(matches!(f.manager.teardown("../x").await, Err(VolumeError::PodUid(_))));
}

#[tokio::test]
async fn a_pod_without_volumes_gets_no_directory() {
    let f = Fixture::new();
    let p = pod("uid-bare", vec![]);
    let volumes = f.manager.setup(&p, &MemorySource::new(), &node()).await.unwrap();
    assert!(volumes.volumes.is_empty());
    assert!(!f.dir.path().join("pods/uid-bare").exists());
    assert!(f.manager.list_pod_uids().unwrap().is_empty());
    f.manager.teardown("uid-bare").await.unwrap();
}

#[tokio::test]
async fn config_map_and_secret_volumes_refresh_atomically() {
    let f = Fixture::new();
    let source = MemorySource::new();
    source.put_config_map(config_map("settings", &[("a.conf", "A1"), ("b.conf", "B1")]));
    source.put_secret(secret("creds", &[("token", "t1"), ("key", "k1")]));
    let mut cfg = vol("cfg");
    cfg.config_map = Some(ConfigMapVolumeSource { name: "settings".into(), ..Default::default() });
    let mut picked = vol("picked");
    picked.config_map = Some(ConfigMapVolumeSource {
        name: "settings".into(),
        items: Some(vec![item("a.conf", "conf/a", Some(0o600))]),
        default_mode: Some(0o440),
        ..Default::default()
    });
    let mut sec = vol("sec");
    sec.secret =
        Some(SecretVolumeSource { secret_name: Some("creds".into()), ..Default::default() });
    let mut absent = vol("absent");
    absent.config_map = Some(ConfigMapVolumeSource {
        name: "nope".into(),
        optional: Some(true),
        ..Default::default()
    });
    let p = pod("uid-cm", vec![cfg, picked, sec, absent]);

    let volumes = f.manager.setup(&p, &source, &node()).await.unwrap();
    let cfg_dir = f.volume_dir("uid-cm", "kubernetes.io~configmap", "cfg");
    let picked_dir = f.volume_dir("uid-cm", "kubernetes.io~configmap", "picked");
    let sec_dir = f.volume_dir("uid-cm", "kubernetes.io~secret", "sec");
    assert!(volumes.get("cfg").unwrap().read_only);
    assert_eq!(read(&cfg_dir.join("a.conf")), "A1");
    assert_eq!(mode(&cfg_dir.join("a.conf")), 0o644);
    assert_eq!(std::fs::read_link(cfg_dir.join("a.conf")).unwrap(), PathBuf::from("..data/a.conf"));
    assert_eq!(read(&picked_dir.join("conf/a")), "A1");
    assert_eq!(mode(&picked_dir.join("conf/a")), 0o600);
    assert!(!picked_dir.join("b.conf").exists());
    assert_eq!(read(&sec_dir.join("token")), "t1");
    // Secrets live on tmpfs only; configMaps on disk.
    assert_eq!(mount_of(&sec_dir).map(|m| m.0), Some("tmpfs".into()));
    assert_eq!(mount_of(&cfg_dir), None);
    let absent_dir = f.volume_dir("uid-cm", "kubernetes.io~configmap", "absent");
    assert_eq!(std::fs::read_dir(&absent_dir).unwrap().count(), 2, "..data and its version only");

    // Nothing changed: nothing written.
    let version = std::fs::read_link(cfg_dir.join("..data")).unwrap();
    assert!(!f.manager.refresh(&p, &source).await.unwrap());
    assert_eq!(std::fs::read_link(cfg_dir.join("..data")).unwrap(), version);

    // An update with a key removed: swapped atomically, old key gone.
    source.put_config_map(config_map("settings", &[("a.conf", "A2")]));
    source.put_secret(secret("creds", &[("token", "t2")]));
    assert!(f.manager.refresh(&p, &source).await.unwrap());
    assert_ne!(std::fs::read_link(cfg_dir.join("..data")).unwrap(), version);
    assert_eq!(read(&cfg_dir.join("a.conf")), "A2");
    assert!(std::fs::symlink_metadata(cfg_dir.join("b.conf")).is_err());
    assert_eq!(read(&picked_dir.join("conf/a")), "A2");
    assert_eq!(read(&sec_dir.join("token")), "t2");
    assert!(std::fs::symlink_metadata(sec_dir.join("key")).is_err());
    // Only one version dir is left per volume.
    let versions = std::fs::read_dir(&cfg_dir)
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            let n = n.to_string_lossy();
            n.starts_with("..") && n != "..data"
        })
        .count();
    assert_eq!(versions, 1);

    f.manager.teardown("uid-cm").await.unwrap();
    assert!(mounted_under(f.dir.path()).is_empty());
    assert!(!f.dir.path().join("pods/uid-cm").exists());
}

#[tokio::test]
async fn missing_objects_and_keys_fail_setup_with_upstream_messages() {
    let f = Fixture::new();
    let source = MemorySource::new();
    source.put_config_map(config_map("settings", &[("a", "1")]));
    let mut missing = vol("cfg");
    missing.config_map = Some(ConfigMapVolumeSource { name: "nope".into(), ..Default::default() });
    let mut bad_key = vol("keys");
    bad_key.config_map = Some(ConfigMapVolumeSource {
        name: "settings".into(),
        items: Some(vec![item("zzz", "z", None)]),
        ..Default::default()
    });
    let mut host = vol("host");
    let file = f.dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    host.host_path = Some(HostPathVolumeSource {
        path: file.to_string_lossy().into_owned(),
        type_: Some("Directory".into()),
    });
    for (v, message) in [
        (missing, "MountVolume.SetUp failed for volume \"cfg\" : configmap \"nope\" not found".to_owned()),
        (
            bad_key,
            "MountVolume.SetUp failed for volume \"keys\" : configmap references non-existent config key: zzz"
                .to_owned(),
        ),
        (
            host,
            format!(
                "MountVolume.SetUp failed for volume \"host\" : hostPath type check failed: {} is not a directory",
                file.display()
            ),
        ),
    ] {
        let p = pod("uid-err", vec![v]);
        let e = f.manager.setup(&p, &source, &node()).await.unwrap_err();
        assert_eq!(e.to_string(), message);
    }
    f.manager.teardown("uid-err").await.unwrap();
}

#[tokio::test]
async fn downward_api_and_projected_volumes() {
    let f = Fixture::new();
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let manager = VolumeManager::with_clock(f.dir.path().join("pods"), clock.clone());
    let source = MemorySource::new();
    source.put_config_map(config_map("kube-root-ca.crt", &[("ca.crt", "CA")]));
    source.put_secret(secret("extra", &[("x", "X")]));
    source.put_service_account("ns", "runner");
    let mut down = vol("podinfo");
    down.downward_api = Some(DownwardAPIVolumeSource {
        default_mode: None,
        items: Some(vec![
            DownwardAPIVolumeFile {
                path: "labels".into(),
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: "metadata.labels".into(),
                }),
                ..Default::default()
            },
            DownwardAPIVolumeFile {
                path: "mem".into(),
                resource_field_ref: Some(ResourceFieldSelector {
                    container_name: Some("c".into()),
                    divisor: Some(Quantity("1Mi".into())),
                    resource: "limits.memory".into(),
                }),
                mode: Some(0o400),
                ..Default::default()
            },
        ]),
    });
    let mut projected = vol("kube-api-access");
    projected.projected = Some(ProjectedVolumeSource {
        default_mode: Some(0o644),
        sources: Some(vec![
            VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    audience: Some("vault".into()),
                    expiration_seconds: Some(3600),
                    path: "token".into(),
                }),
                ..Default::default()
            },
            VolumeProjection {
                config_map: Some(ConfigMapProjection {
                    name: "kube-root-ca.crt".into(),
                    items: Some(vec![item("ca.crt", "ca.crt", None)]),
                    optional: None,
                }),
                ..Default::default()
            },
            VolumeProjection {
                secret: Some(SecretProjection {
                    name: "extra".into(),
                    items: None,
                    optional: None,
                }),
                ..Default::default()
            },
            VolumeProjection {
                downward_api: Some(DownwardAPIProjection {
                    items: Some(vec![DownwardAPIVolumeFile {
                        path: "namespace".into(),
                        field_ref: Some(ObjectFieldSelector {
                            api_version: Some("v1".into()),
                            field_path: "metadata.namespace".into(),
                        }),
                        ..Default::default()
                    }]),
                }),
                ..Default::default()
            },
        ]),
    });
    let p = pod("uid-proj", vec![down, projected]);
    manager.setup(&p, &source, &node()).await.unwrap();
    let down_dir = f.volume_dir("uid-proj", "kubernetes.io~downward-api", "podinfo");
    let proj_dir = f.volume_dir("uid-proj", "kubernetes.io~projected", "kube-api-access");
    assert_eq!(read(&down_dir.join("labels")), "app=\"web\"");
    // No memory limit: the node's allocatable memory.
    assert_eq!(read(&down_dir.join("mem")), "1024");
    assert_eq!(mode(&down_dir.join("mem")), 0o400);
    assert_eq!(mount_of(&proj_dir).map(|m| m.0), Some("tmpfs".into()));
    assert_eq!(read(&proj_dir.join("token")), "token-1");
    assert_eq!(read(&proj_dir.join("ca.crt")), "CA");
    assert_eq!(read(&proj_dir.join("x")), "X");
    assert_eq!(read(&proj_dir.join("namespace")), "ns");
    let requests = source.token_requests();
    assert_eq!(requests.len(), 1);
    let (ns, sa, request) = &requests[0];
    assert_eq!((ns.as_str(), sa.as_str()), ("ns", "runner"));
    assert_eq!(request.spec.audiences, vec!["vault".to_owned()]);
    assert_eq!(request.spec.expiration_seconds, Some(3600));
    let bound = request.spec.bound_object_ref.as_ref().unwrap();
    assert_eq!(
        (bound.kind.as_deref(), bound.name.as_deref(), bound.uid.as_deref()),
        (Some("Pod"), Some("p"), Some("uid-proj"))
    );

    // A fresh token is reused; past 80% of its life it is renewed and the volume swapped.
    assert!(!manager.refresh(&p, &source).await.unwrap());
    clock.advance(Duration::from_secs(2000));
    assert!(!manager.refresh(&p, &source).await.unwrap());
    assert_eq!(source.token_requests().len(), 1);
    clock.advance(Duration::from_secs(1000));
    assert!(manager.refresh(&p, &source).await.unwrap());
    assert_eq!(read(&proj_dir.join("token")), "token-2");

    manager.teardown("uid-proj").await.unwrap();
    assert!(mounted_under(f.dir.path()).is_empty());
}

fn claim(name: &str, phase: &str, volume: Option<&str>) -> PersistentVolumeClaim {
    let mut c = PersistentVolumeClaim::default();
    c.metadata.namespace = Some("ns".into());
    c.metadata.name = Some(name.into());
    c.spec = Some(PersistentVolumeClaimSpec {
        volume_name: volume.map(str::to_owned),
        ..Default::default()
    });
    c.status =
        Some(PersistentVolumeClaimStatus { phase: Some(phase.into()), ..Default::default() });
    c
}

#[tokio::test]
async fn claims_hostpaths_mounts_and_teardown_keep_node_data() {
    let f = Fixture::new();
    let source = MemorySource::new();
    let data = f.dir.path().join("pv-data");
    let mut pv = PersistentVolume::default();
    pv.metadata.name = Some("pv-1".into());
    pv.spec = Some(PersistentVolumeSpec {
        host_path: Some(HostPathVolumeSource {
            path: data.to_string_lossy().into_owned(),
            type_: Some("DirectoryOrCreate".into()),
        }),
        ..Default::default()
    });
    source.put_volume(pv);
    source.put_claim(claim("pending", "Pending", None));
    let mut pending = vol("data");
    pending.persistent_volume_claim =
        Some(PersistentVolumeClaimVolumeSource { claim_name: "pending".into(), read_only: None });
    let e = f.manager.setup(&pod("uid-pvc", vec![pending]), &source, &node()).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "MountVolume.SetUp failed for volume \"data\" : persistentvolumeclaim \"pending\" is not bound"
    );

    source.put_claim(claim("bound", "Bound", Some("pv-1")));
    let mut bound = vol("data");
    bound.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
        claim_name: "bound".into(),
        read_only: Some(true),
    });
    let host_dir = f.dir.path().join("host-dir");
    std::fs::create_dir(&host_dir).unwrap();
    std::fs::write(host_dir.join("keep"), "k").unwrap();
    let mut host = vol("host");
    host.host_path =
        Some(HostPathVolumeSource { path: host_dir.to_string_lossy().into_owned(), type_: None });
    let mut scratch = vol("scratch");
    scratch.empty_dir = Some(EmptyDirVolumeSource::default());
    let p = pod("uid-pvc", vec![bound, host, scratch]);
    let volumes = f.manager.setup(&p, &source, &node()).await.unwrap();
    assert!(data.is_dir(), "DirectoryOrCreate made the PV's directory");
    std::fs::write(data.join("db"), "rows").unwrap();

    let scratch_dir = f.volume_dir("uid-pvc", "kubernetes.io~empty-dir", "scratch");
    // A container plants links to node data in its emptyDir.
    std::os::unix::fs::symlink(&host_dir, scratch_dir.join("to-host")).unwrap();
    std::os::unix::fs::symlink(&data, scratch_dir.join("to-pv")).unwrap();

    let mount = |name: &str, path: &str, read_only: Option<bool>| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only,
        ..Default::default()
    };
    let mut sub = mount("scratch", "/logs", None);
    sub.sub_path_expr = Some("logs/$(POD_NAME)".into());
    let container = Container {
        name: "c".into(),
        volume_mounts: Some(vec![
            mount("data", "/data", None),
            mount("host", "/host", Some(true)),
            mount("scratch", "/scratch", None),
            sub,
        ]),
        ..Default::default()
    };
    let env = vec![("POD_NAME".to_owned(), "p".to_owned())];
    let mounts = volumes.mounts_for(&container, &env).unwrap();
    let scratch_canon = std::fs::canonicalize(&scratch_dir).unwrap();
    let bind = |p: PathBuf| MountSource::Bind { host_path: p };
    assert_eq!(
        mounts,
        vec![
            Mount { container_path: "/data".into(), source: bind(data.clone()), readonly: true },
            Mount {
                container_path: "/host".into(),
                source: bind(host_dir.clone()),
                readonly: true
            },
            Mount {
                container_path: "/scratch".into(),
                source: bind(scratch_dir.clone()),
                readonly: false
            },
            Mount {
                container_path: "/logs".into(),
                source: bind(scratch_canon.join("logs/p")),
                readonly: false
            },
        ]
    );
    assert!(scratch_dir.join("logs/p").is_dir());

    let with = |m: VolumeMount| Container {
        name: "c".into(),
        volume_mounts: Some(vec![m]),
        ..Default::default()
    };
    let mut escape = mount("scratch", "/x", None);
    escape.sub_path = Some("to-host".into());
    let e = volumes.mounts_for(&with(escape), &env).unwrap_err();
    assert!(e.to_string().contains("not within volume path"), "{e}");
    let mut back = mount("scratch", "/x", None);
    back.sub_path = Some("../../etc".into());
    assert_eq!(
        volumes.mounts_for(&with(back), &env).unwrap_err().to_string(),
        "unable to provision SubPath `../../etc`: must not contain '..'"
    );
    let mut abs = mount("scratch", "/x", None);
    abs.sub_path_expr = Some("/$(POD_NAME)".into());
    assert_eq!(
        volumes.mounts_for(&with(abs), &env).unwrap_err().to_string(),
        "error SubPath `/p` must not be an absolute path"
    );
    assert_eq!(
        volumes.mounts_for(&with(mount("nope", "/x", None)), &env).unwrap_err().to_string(),
        "cannot find volume \"nope\" to mount into container \"c\""
    );

    f.manager.teardown("uid-pvc").await.unwrap();
    assert!(!f.dir.path().join("pods/uid-pvc").exists());
    assert_eq!(read(&host_dir.join("keep")), "k");
    assert_eq!(read(&data.join("db")), "rows");
    assert!(mounted_under(f.dir.path()).is_empty());
}

//! A Pod as the runtime's configs: the sandbox (hostname, DNS, host aliases, logs
//! directory) and each container (process, resources as cgroup settings, security context).

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod};
use rudder_runtime::{
    ContainerConfig, ContainerMetadata, DnsConfig, HostAlias, LinuxResources, Mount,
    PodSandboxConfig, PodSandboxMetadata, SecurityContext,
};

use crate::config::KubeletConfig;
use crate::labels;
use crate::pod_status::qos_class;

fn meta(pod: &Pod) -> (&str, &str, &str) {
    (
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or(""),
    )
}

/// `<pod_log_dir>/<namespace>_<name>_<uid>` (upstream's layout).
pub fn pod_log_dir(cfg: &KubeletConfig, pod: &Pod) -> std::path::PathBuf {
    let (ns, name, uid) = meta(pod);
    cfg.pod_log_dir.join(format!("{ns}_{name}_{uid}"))
}

fn pod_labels(pod: &Pod) -> BTreeMap<String, String> {
    let (ns, name, uid) = meta(pod);
    BTreeMap::from([
        (labels::POD_UID.to_owned(), uid.to_owned()),
        (labels::POD_NAME.to_owned(), name.to_owned()),
        (labels::POD_NAMESPACE.to_owned(), ns.to_owned()),
    ])
}

/// DNS settings per dnsPolicy: ClusterFirst (the default; falls back to the node's
/// settings when no cluster DNS is configured, or for host-network pods unless
/// ClusterFirstWithHostNet), Default (the node's resolv.conf), None (only dnsConfig).
pub fn dns_config(cfg: &KubeletConfig, pod: &Pod) -> DnsConfig {
    let spec = pod.spec.as_ref();
    let policy = spec.and_then(|s| s.dns_policy.as_deref()).unwrap_or("ClusterFirst");
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let ns = meta(pod).0;
    let cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    } && !cfg.cluster_dns.is_empty();
    let mut dns = DnsConfig::default();
    if cluster {
        let d = &cfg.cluster_domain;
        dns.servers = cfg.cluster_dns.clone();
        dns.searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
        dns.options = vec!["ndots:5".into()];
    }
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        for s in extra.nameservers.iter().flatten() {
            if !dns.servers.contains(s) {
                dns.servers.push(s.clone());
            }
        }
        for s in extra.searches.iter().flatten() {
            if !dns.searches.contains(s) {
                dns.searches.push(s.clone());
            }
        }
        for o in extra.options.iter().flatten() {
            let name = o.name.clone().unwrap_or_default();
            dns.options.retain(|x| x.split(':').next() != Some(name.as_str()));
            dns.options.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name,
            });
        }
    }
    dns
}

pub fn sandbox_config(cfg: &KubeletConfig, pod: &Pod, attempt: u32) -> PodSandboxConfig {
    let (ns, name, uid) = meta(pod);
    let spec = pod.spec.as_ref();
    let mut hostname = spec.and_then(|s| s.hostname.clone()).unwrap_or_else(|| name.to_owned());
    hostname.truncate(63);
    let hostname = hostname.trim_end_matches(['-', '.']).to_owned();
    let mut labels = pod_labels(pod);
    labels.extend(pod.metadata.labels.clone().unwrap_or_default());
    PodSandboxConfig {
        metadata: PodSandboxMetadata {
            name: name.to_owned(),
            namespace: ns.to_owned(),
            uid: uid.to_owned(),
            attempt,
        },
        hostname,
        subdomain: spec.and_then(|s| s.subdomain.clone()),
        cluster_domain: cfg.cluster_domain.clone(),
        dns: dns_config(cfg, pod),
        host_aliases: spec
            .and_then(|s| s.host_aliases.as_ref())
            .into_iter()
            .flatten()
            .map(|a| HostAlias {
                ip: a.ip.clone(),
                hostnames: a.hostnames.clone().unwrap_or_default(),
            })
            .collect(),
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        log_directory: Some(pod_log_dir(cfg, pod)),
        labels,
        annotations: pod.metadata.annotations.clone().unwrap_or_default(),
        cgroup_parent: None,
    }
}

fn milli(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> Option<i64> {
    q.and_then(|q| rudder_api::quantity::parse_milli(&q.0).ok()).and_then(|m| i64::try_from(m).ok())
}

/// Requests and limits as cgroup settings (upstream's rules: shares from the cpu request
/// (a limit alone counts as the request), quota from the cpu limit over a 100 ms period,
/// the memory limit, and an OOM score by QoS class).
pub fn resources(pod: &Pod, c: &Container, node_memory_bytes: u64) -> LinuxResources {
    let r = c.resources.as_ref();
    let get = |which: &str, res: &str| {
        let m = if which == "limits" {
            r.and_then(|r| r.limits.as_ref())
        } else {
            r.and_then(|r| r.requests.as_ref())
        };
        milli(m.and_then(|m| m.get(res)))
    };
    let cpu_limit = get("limits", "cpu");
    let cpu_request = get("requests", "cpu").or(cpu_limit);
    let mem_limit = get("limits", "memory").map(|m| m / 1000);
    let mem_request = get("requests", "memory").or(get("limits", "memory")).map(|m| m / 1000);
    let cpu_shares = cpu_request.map(|m| ((m * 1024) / 1000).max(2) as u64).unwrap_or(2);
    let oom = match qos_class(pod) {
        "Guaranteed" => -997,
        "BestEffort" => 1000,
        _ => {
            let req = mem_request.unwrap_or(0).max(0) as u64;
            let score = (1000 * req)
                .checked_div(node_memory_bytes)
                .map(|share| 1000 - share as i64)
                .unwrap_or(999);
            score.clamp(2, 999)
        }
    };
    LinuxResources {
        cpu_shares: Some(cpu_shares),
        cpu_quota: cpu_limit.map(|m| (m * 100_000 / 1000).max(1000)),
        cpu_period: cpu_limit.map(|_| 100_000),
        memory_limit_bytes: mem_limit,
        pids_limit: None,
        oom_score_adj: Some(oom),
    }
}

pub fn security(pod: &Pod, c: &Container) -> SecurityContext {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    SecurityContext {
        privileged: sc.and_then(|s| s.privileged).unwrap_or(false),
        run_as_user: sc
            .and_then(|s| s.run_as_user)
            .or(psc.and_then(|p| p.run_as_user))
            .map(|u| u as u32),
        run_as_group: sc
            .and_then(|s| s.run_as_group)
            .or(psc.and_then(|p| p.run_as_group))
            .map(|g| g as u32),
        read_only_rootfs: sc.and_then(|s| s.read_only_root_filesystem).unwrap_or(false),
        capabilities_add: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
        capabilities_drop: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
        no_new_privileges: sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        supplemental_groups: psc
            .and_then(|p| p.supplemental_groups.clone())
            .unwrap_or_default()
            .into_iter()
            .chain(psc.and_then(|p| p.fs_group))
            .map(|g| g as u32)
            .collect(),
    }
}

/// Everything the runtime needs for one container attempt; `command`/`args` are already
/// `$(VAR)`-expanded, `env` and `mounts` computed by the caller.
#[allow(clippy::too_many_arguments)]
pub fn container_config(
    pod: &Pod,
    c: &Container,
    init: bool,
    attempt: u32,
    command: Vec<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    mounts: Vec<Mount>,
    node_memory_bytes: u64,
) -> ContainerConfig {
    let mut labels = pod_labels(pod);
    labels.insert(crate::labels::CONTAINER_NAME.into(), c.name.clone());
    let grace = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
    let annotations = BTreeMap::from([
        (crate::labels::CONTAINER_HASH.to_owned(), crate::actions::container_hash(c)),
        (crate::labels::GRACE_PERIOD.to_owned(), grace.to_string()),
        (crate::labels::INIT_CONTAINER.to_owned(), init.to_string()),
    ]);
    ContainerConfig {
        metadata: ContainerMetadata { name: c.name.clone(), attempt },
        image: c.image.clone().unwrap_or_default(),
        command,
        args,
        working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
        envs: env,
        mounts,
        resources: resources(pod, c, node_memory_bytes),
        security: security(pod, c),
        tty: c.tty.unwrap_or(false),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        log_path: Some(Path::new(&c.name).join(format!("{attempt}.log")).display().to_string()),
        labels,
        annotations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::tests::pod;
    use serde_json::json;

    fn cfg() -> KubeletConfig {
        let mut c = KubeletConfig::new("n", "10.0.0.1".parse().unwrap(), "/var/lib/k".into());
        c.cluster_dns = vec!["10.43.0.10".into()];
        c
    }

    #[test]
    fn dns_follows_the_policy() {
        let p = pod(json!({"containers": [{"name": "a"}]}));
        let d = dns_config(&cfg(), &p);
        assert_eq!(d.servers, vec!["10.43.0.10"]);
        assert_eq!(
            d.searches,
            vec!["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]
        );
        assert_eq!(d.options, vec!["ndots:5"]);
        let host = pod(json!({"hostNetwork": true, "containers": [{"name": "a"}]}));
        assert_eq!(dns_config(&cfg(), &host), DnsConfig::default());
        let none = pod(
            json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1"], "options": [{"name": "ndots", "value": "2"}]}, "containers": [{"name": "a"}]}),
        );
        let d = dns_config(&cfg(), &none);
        assert_eq!(
            (d.servers, d.options),
            (vec!["1.1.1.1".to_owned()], vec!["ndots:2".to_owned()])
        );
    }

    #[test]
    fn sandbox_carries_identity_and_log_dir() {
        let p = pod(json!({"hostname": "h", "subdomain": "svc", "containers": [{"name": "a"}]}));
        let s = sandbox_config(&cfg(), &p, 1);
        assert_eq!((s.hostname.as_str(), s.subdomain.as_deref()), ("h", Some("svc")));
        assert_eq!(s.labels[labels::POD_UID], "u1");
        assert_eq!(s.log_directory.unwrap(), Path::new("/var/lib/k/logs/pods/default_p_u1"));
        assert_eq!(s.metadata.attempt, 1);
    }

    #[test]
    fn resources_become_cgroup_settings() {
        let p = pod(
            json!({"containers": [{"name": "a", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}}]}),
        );
        let c = &p.spec.as_ref().unwrap().containers[0];
        let r = resources(&p, c, 1 << 30);
        assert_eq!(r.cpu_shares, Some(512));
        assert_eq!((r.cpu_quota, r.cpu_period), (Some(50_000), Some(100_000)));
        assert_eq!(r.memory_limit_bytes, Some(64 << 20));
        assert_eq!(r.oom_score_adj, Some(-997));
        let b = pod(json!({"containers": [{"name": "a"}]}));
        let r = resources(&b, &b.spec.as_ref().unwrap().containers[0], 1 << 30);
        assert_eq!(
            (r.cpu_shares, r.oom_score_adj, r.memory_limit_bytes),
            (Some(2), Some(1000), None)
        );
    }

    #[test]
    fn container_config_names_its_log_and_owner() {
        let p = pod(json!({"containers": [{"name": "web", "image": "busybox", "tty": true}]}));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let cc = container_config(&p, c, false, 2, vec![], vec![], vec![], vec![], 0);
        assert_eq!(cc.log_path.as_deref(), Some("web/2.log"));
        assert_eq!(cc.labels[labels::CONTAINER_NAME], "web");
        assert_eq!(cc.annotations[labels::CONTAINER_HASH], "busybox");
        assert!(cc.tty);
    }
}

//! Pod sandboxes on a test node (its own network namespace; the host network is never
//! touched). Run as root.

mod common;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::{TIMEOUT, TestNode, assert_sandbox_gone, exec, ping, tcp_exchange};
use rudder_net::cmd::Cmd;
use rudder_net::link::{self, Netns, nat_table_name};
use rudder_net::{NetworkError, PodNetwork, names, ns};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn two_pods_get_distinct_ips_and_reach_each_other() {
    let node = TestNode::new();
    let a = node.net.setup_pod(&node.sandbox_id("a"), "pod-a").unwrap();
    let b = node.net.setup_pod(&node.sandbox_id("b"), "pod-b").unwrap();
    assert_ne!(a.ip, b.ip);
    for pod in [&a, &b] {
        assert!(node.net.cidr().is_pod_ip(pod.ip), "{} outside the pod range", pod.ip);
        assert_eq!(pod.gateway, node.net.gateway());
        assert_eq!(pod.prefix_len, 24);
    }
    ping(&a.netns, b.ip);
    ping(&b.netns, a.ip);
    // Pod to pod on the bridge is not masqueraded: the server sees the client's pod IP.
    assert_eq!(tcp_exchange(&b.netns, b.ip, &a.netns).ip(), a.ip);
    assert_eq!(tcp_exchange(&a.netns, a.ip, &b.netns).ip(), b.ip);
}

/// The namespace files live on a tmpfs of their own, whatever the host's /run is: a fresh
/// mount (mountinfo root `/`), not a bind mount of a directory of the disk underneath.
#[test]
fn namespace_files_are_on_a_tmpfs_of_their_own() {
    let node = TestNode::new();
    let pod = node.net.setup_pod(&node.sandbox_id("t"), "pod-t").unwrap();
    let dir = node.cfg.run_dir.to_string_lossy().into_owned();
    let own: Vec<(String, String)> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(dir.as_str()))
        .map(|l| {
            let root = l.split(' ').nth(3).unwrap_or_default().to_owned();
            let fs_type = l.split(" - ").nth(1).and_then(|t| t.split(' ').next());
            (root, fs_type.unwrap_or_default().to_owned())
        })
        .collect();
    assert_eq!(own, vec![("/".to_owned(), "tmpfs".to_owned())], "mounts on {dir}");
    assert!(ns::is_namespace_mounted(&pod.ipc_ns));
    node.net.teardown_pod(&node.sandbox_id("t")).unwrap();
}

#[test]
fn node_reaches_pod_and_pod_reaches_gateway() {
    let node = TestNode::new();
    let pod = node.net.setup_pod(&node.sandbox_id("p"), "pod").unwrap();
    ping(&node.netns, pod.ip);
    ping(&pod.netns, pod.gateway);
    assert_eq!(tcp_exchange(&pod.netns, pod.ip, &node.netns).ip(), pod.gateway);
    assert_eq!(tcp_exchange(&node.netns, pod.gateway, &pod.netns).ip(), pod.ip);
    // A pod reaches itself through loopback too.
    assert_eq!(tcp_exchange(&pod.netns, Ipv4Addr::LOCALHOST, &pod.netns).ip(), Ipv4Addr::LOCALHOST);
}

#[test]
fn pod_hostname_is_set_in_uts_namespace() {
    let node = TestNode::new();
    let pod = node.net.setup_pod(&node.sandbox_id("h"), "web-0").unwrap();
    let uts = format!("--uts={}", pod.uts_ns.display());
    assert_eq!(exec(None, "nsenter", &[&uts, "hostname"]).stdout.trim(), "web-0");
    // Our own hostname is untouched.
    let ours = nix::unistd::gethostname().unwrap();
    assert_ne!(ours.to_string_lossy(), "web-0");

    let long = format!("{}-{}", "a".repeat(62), "b".repeat(20));
    let pod = node.net.setup_pod(&node.sandbox_id("long"), &long).unwrap();
    let uts = format!("--uts={}", pod.uts_ns.display());
    assert_eq!(exec(None, "nsenter", &[&uts, "hostname"]).stdout.trim(), "a".repeat(62));
}

#[test]
fn ipc_namespace_is_private_to_the_pod() {
    let node = TestNode::new();
    let pod = node.net.setup_pod(&node.sandbox_id("i"), "pod").unwrap();
    let host = exec(None, "readlink", &["/proc/self/ns/ipc"]).stdout;
    let ipc = format!("--ipc={}", pod.ipc_ns.display());
    let inside = exec(None, "nsenter", &[&ipc, "readlink", "/proc/self/ns/ipc"]).stdout;
    assert!(inside.starts_with("ipc:["), "{inside}");
    assert_ne!(host, inside);
}

#[test]
fn pod_interfaces_are_configured() {
    let node = TestNode::with(|cfg| cfg.mtu = 1400);
    let pod = node.net.setup_pod(&node.sandbox_id("cfg"), "pod").unwrap();

    let links = json(&exec(Some(&pod.netns), "ip", &["-j", "addr", "show"]).stdout);
    let links = links.as_array().unwrap();
    let names: Vec<&str> = links.iter().map(|l| l["ifname"].as_str().unwrap()).collect();
    assert_eq!(names, ["lo", "eth0"]);
    let lo = &links[0];
    assert!(lo["flags"].as_array().unwrap().iter().any(|f| f == "UP"), "{lo}");
    let eth0 = &links[1];
    assert_eq!(eth0["mtu"], 1400);
    assert!(eth0["flags"].as_array().unwrap().iter().any(|f| f == "UP"), "{eth0}");
    let inet: Vec<String> = eth0["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["family"] == "inet")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect();
    assert_eq!(inet, [format!("{}/24", pod.ip)]);

    let routes = json(&exec(Some(&pod.netns), "ip", &["-j", "route", "show", "default"]).stdout);
    assert_eq!(routes[0]["gateway"], pod.gateway.to_string(), "{routes}");
    assert_eq!(routes[0]["dev"], "eth0");

    let veth = json(&node.ip(&["-j", "-d", "link", "show", "dev", &pod.host_veth]));
    assert_eq!(veth[0]["master"], node.cfg.bridge.as_str(), "{veth}");
    assert_eq!(veth[0]["mtu"], 1400);
    assert_eq!(veth[0]["linkinfo"]["info_slave_data"]["hairpin"], true, "{veth}");
    assert_eq!(pod.host_veth, names::host_veth_name(&pod_id(&pod)));

    let bridge = json(&node.ip(&["-j", "addr", "show", "dev", &node.cfg.bridge]));
    let local = &bridge[0]["addr_info"][0];
    assert_eq!(local["local"], pod.gateway.to_string());
    assert_eq!(local["prefixlen"], 24);
    let forward = common::exec(Some(&node.netns), "cat", &["/proc/sys/net/ipv4/ip_forward"]);
    assert_eq!(forward.stdout.trim(), "1");
}

/// The sandbox id back from the netns file name.
fn pod_id(pod: &PodNetwork) -> String {
    let name = pod.netns.file_name().unwrap().to_str().unwrap();
    name.strip_prefix(names::NETNS_PREFIX).unwrap().to_owned()
}

#[test]
fn masquerade_applies_to_traffic_leaving_the_pod_cidr() {
    let node = TestNode::new();
    // An "outside" network: a /30 link between the node and a namespace with no route to
    // the pod CIDR, so only masqueraded connections can be answered.
    let outside = node.extra_netns("out");
    let link = format!("rtx{}", &node.cfg.bridge[2..]);
    let outside_arg = outside.to_string_lossy().into_owned();
    node.ip(&["link", "add", &link, "type", "veth", "peer", "name", "ext0", "netns", &outside_arg]);
    node.ip(&["addr", "add", "192.0.2.1/30", "dev", &link]);
    node.ip(&["link", "set", &link, "up"]);
    exec(Some(&outside), "ip", &["addr", "add", "192.0.2.2/30", "dev", "ext0"]);
    exec(Some(&outside), "ip", &["link", "set", "ext0", "up"]);

    let pod = node.net.setup_pod(&node.sandbox_id("m"), "pod").unwrap();
    let seen = tcp_exchange(&outside, Ipv4Addr::new(192, 0, 2, 2), &pod.netns);
    assert_eq!(seen.ip(), Ipv4Addr::new(192, 0, 2, 1), "not masqueraded");

    let table = nat_table_name(&node.cfg.bridge);
    let rules = exec(Some(&node.netns), "nft", &["list", "table", "ip", &table]).stdout;
    assert!(
        rules.contains(&format!(
            "ip saddr {} ip daddr != {} masquerade",
            node.cfg.pod_cidr, node.cfg.pod_cidr
        )),
        "{rules}"
    );

    // Switching masquerade off removes the table.
    let mut cfg = node.cfg.clone();
    cfg.masquerade = false;
    rudder_net::Network::new(cfg).unwrap().ensure_node().unwrap();
    let out = Cmd::in_netns(Some(&node.netns), "nft")
        .args(["list", "table", "ip", &table])
        .output(TIMEOUT)
        .unwrap();
    assert!(!out.status.success(), "table still there: {}", out.stdout);
}

#[test]
fn ensure_node_is_idempotent_and_refuses_a_non_bridge() {
    let node = TestNode::new();
    node.net.ensure_node().unwrap();
    node.net.ensure_node().unwrap();
    let bridge = json(&node.ip(&["-j", "addr", "show", "dev", &node.cfg.bridge]));
    let addrs = bridge[0]["addr_info"].as_array().unwrap();
    let inet = addrs.iter().filter(|a| a["family"] == "inet").count();
    assert_eq!(inet, 1, "{bridge}");
    let tables = exec(Some(&node.netns), "nft", &["list", "tables"]).stdout;
    assert_eq!(tables.matches(&nat_table_name(&node.cfg.bridge)).count(), 1, "{tables}");

    let mut cfg = node.cfg.clone();
    cfg.bridge = format!("{}x", &cfg.bridge[..cfg.bridge.len() - 1]);
    let peer = format!("{}p", &cfg.bridge[..cfg.bridge.len() - 1]);
    node.ip(&["link", "add", &cfg.bridge, "type", "veth", "peer", "name", &peer]);
    let err = rudder_net::Network::new(cfg).unwrap().ensure_node().unwrap_err();
    assert!(err.to_string().contains("not a bridge"), "{err}");
}

#[test]
fn teardown_node_removes_bridge_and_table() {
    let node = TestNode::new();
    node.net.teardown_node().unwrap();
    node.net.teardown_node().unwrap();
    let out = Cmd::in_netns(Some(&node.netns), "ip")
        .args(["link", "show", "dev", &node.cfg.bridge])
        .output(TIMEOUT)
        .unwrap();
    assert!(!out.status.success());
    let tables = exec(Some(&node.netns), "nft", &["list", "tables"]).stdout;
    assert!(!tables.contains(&nat_table_name(&node.cfg.bridge)), "{tables}");
}

#[test]
fn teardown_is_idempotent_and_leaves_nothing_after_50_cycles() {
    let node = TestNode::new();
    let mut setup_times = Vec::new();
    let mut teardown_times = Vec::new();
    let mut ips = HashSet::new();
    for i in 0..50 {
        let id = node.sandbox_id(&format!("c{i}"));
        let start = Instant::now();
        let pod = node.net.setup_pod(&id, "cycle").unwrap();
        setup_times.push(start.elapsed());
        ips.insert(pod.ip);
        let start = Instant::now();
        node.net.teardown_pod(&id).unwrap();
        teardown_times.push(start.elapsed());
        node.net.teardown_pod(&id).unwrap();
        assert_sandbox_gone(&node, &id);
    }
    // The cursor moves on: 50 cycles used 50 different addresses.
    assert_eq!(ips.len(), 50);
    assert_eq!(node.net.list_pods().unwrap(), Vec::<String>::new());
    let veths = json(&node.ip(&["-j", "link", "show", "type", "veth"]));
    assert_eq!(veths, serde_json::json!([]));
    let mut left: Vec<String> = std::fs::read_dir(node.ipam_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["last", "lock"]);
    let entries = std::fs::read_dir(&node.cfg.run_dir).unwrap().count();
    assert_eq!(entries, 0);
    report("setup_pod", &mut setup_times);
    report("teardown_pod", &mut teardown_times);
}

/// Prints timing (never asserted: timing does not decide a test).
fn report(what: &str, times: &mut [Duration]) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "TIMING {what}: p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms over {} runs",
        ms(times[times.len() / 2]),
        ms(times[times.len() * 9 / 10]),
        ms(times[times.len() - 1]),
        times.len()
    );
}

#[test]
fn failed_setup_rolls_back_everything() {
    let node = TestNode::new();
    let id = node.sandbox_id("fail");
    // Something already holds the host veth name, so the veth step fails after the
    // address and the namespaces were created.
    let peer = format!("rtp{}", &node.cfg.bridge[2..]);
    node.ip(&["link", "add", &names::host_veth_name(&id), "type", "veth", "peer", "name", &peer]);
    let err = node.net.setup_pod(&id, "pod").unwrap_err();
    assert!(matches!(err, NetworkError::Link(_)), "{err}");
    let message = err.to_string();
    assert!(message.contains("add veth") && message.contains("File exists"), "{message}");
    assert!(!names::netns_path(&id).exists());
    assert_eq!(node.net.ipam().lookup(&id).unwrap(), None);
    assert!(!node.cfg.run_dir.join(&id).exists());
    assert_eq!(common::mounts_mentioning(&names::netns_name(&id)), Vec::<String>::new());
    // The rollback deleted the conflicting link too (it had the sandbox's veth name).
    let out = Cmd::in_netns(Some(&node.netns), "ip")
        .args(["link", "show", "dev", &peer])
        .output(TIMEOUT)
        .unwrap();
    assert!(!out.status.success(), "{}", out.stdout);
    node.net.teardown_pod(&id).unwrap();
    assert_sandbox_gone(&node, &id);
}

#[test]
fn link_requests_report_the_kernels_reason_and_tolerate_missing_links() {
    let node = TestNode::new();
    let ns = Netns { path: Some(&node.netns), timeout: TIMEOUT };
    assert!(link::link_exists(&ns, &node.cfg.bridge).unwrap());
    assert!(!link::link_exists(&ns, "rt-missing0").unwrap());
    link::delete_link(&ns, "rt-missing0").unwrap();
    // A namespace without eth0: the pod side fails, naming the request and the errno.
    let empty = node.extra_netns("noeth");
    let pod = Netns { path: Some(&empty), timeout: TIMEOUT };
    let cidr = node.net.cidr();
    let err = link::configure_pod_interfaces(&pod, cidr.gateway(), cidr).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("get link eth0") && message.contains("No such device"), "{message}");
    // A veth to a bridge that does not exist is refused once the pair exists.
    let pod_ns = node.extra_netns("nobridge");
    let err = link::add_pod_veth(&ns, "rtveth0", &pod_ns, "rt-nobridge", 1500).unwrap_err();
    assert!(err.to_string().contains("get link rt-nobridge"), "{err}");
}

#[test]
fn half_created_sandbox_is_cleaned_by_teardown() {
    let node = TestNode::new();
    // As if the agent died right after creating the namespaces: the sandbox directory, an
    // address and the namespace mounts exist, no veth.
    let id = node.sandbox_id("half");
    let paths = node.net.sandbox_namespaces(&id).unwrap();
    ns::ensure_shared_tmpfs(&node.cfg.run_dir).unwrap();
    std::fs::create_dir_all(node.cfg.run_dir.join(&id)).unwrap();
    node.net.ipam().allocate(&id).unwrap();
    ns::create(&paths, "half").unwrap();
    for path in [&paths.net, &paths.ipc, &paths.uts] {
        assert!(ns::is_namespace_mounted(path), "{path:?}");
    }
    assert_eq!(node.net.list_pods().unwrap(), vec![id.clone()]);
    assert_eq!(node.net.pod_network(&id).unwrap(), None, "incomplete sandbox");
    node.net.teardown_pod(&id).unwrap();
    assert_sandbox_gone(&node, &id);

    // Only the netns file, not even mounted (died between creating and mounting it).
    let id = node.sandbox_id("file");
    let paths = node.net.sandbox_namespaces(&id).unwrap();
    std::fs::write(&paths.net, "").unwrap();
    node.net.teardown_pod(&id).unwrap();
    assert_sandbox_gone(&node, &id);
}

#[test]
fn sandboxes_are_rediscovered_after_restart() {
    let node = TestNode::new();
    let a_id = node.sandbox_id("a");
    let b_id = node.sandbox_id("b");
    let a = node.net.setup_pod(&a_id, "a").unwrap();
    let b = node.net.setup_pod(&b_id, "b").unwrap();

    let restarted = node.reopen();
    let mut expected = vec![a_id.clone(), b_id.clone()];
    expected.sort();
    assert_eq!(restarted.list_pods().unwrap(), expected);
    assert_eq!(restarted.pod_network(&a_id).unwrap(), Some(a.clone()));
    assert_eq!(restarted.pod_network(&b_id).unwrap(), Some(b));
    // Setting up an existing sandbox is refused and leaves it intact.
    let err = restarted.setup_pod(&a_id, "a").unwrap_err();
    assert!(matches!(err, NetworkError::SandboxExists(_)), "{err}");
    ping(&a.netns, a.gateway);

    restarted.teardown_pod(&b_id).unwrap();
    assert_eq!(restarted.list_pods().unwrap(), vec![a_id.clone()]);
    assert_eq!(restarted.pod_network(&b_id).unwrap(), None);
}

#[test]
fn concurrent_setups_get_distinct_addresses() {
    let node = TestNode::new();
    let ids: Vec<String> = (0..12).map(|i| node.sandbox_id(&format!("p{i}"))).collect();
    let pods: Vec<PodNetwork> = std::thread::scope(|scope| {
        let handles: Vec<_> =
            ids.iter().map(|id| scope.spawn(|| node.net.setup_pod(id, "pod").unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ips: HashSet<Ipv4Addr> = pods.iter().map(|p| p.ip).collect();
    assert_eq!(ips.len(), pods.len());
    ping(&pods[0].netns, pods[11].ip);
    std::thread::scope(|scope| {
        for id in &ids {
            scope.spawn(|| node.net.teardown_pod(id).unwrap());
        }
    });
    for id in &ids {
        assert_sandbox_gone(&node, id);
    }
}

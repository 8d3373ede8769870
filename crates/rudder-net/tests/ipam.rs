//! The persistent address allocator (no root needed).

use std::collections::HashSet;
use std::net::Ipv4Addr;

use rudder_net::Ipv4Cidr;
use rudder_net::ipam::{Ipam, IpamError};

fn cidr(text: &str) -> Ipv4Cidr {
    text.parse().unwrap()
}

#[test]
fn hands_out_host_addresses_only_then_reports_exhaustion() {
    let dir = tempfile::tempdir().unwrap();
    // 10.9.9.0/29: .0 network, .1 gateway, .7 broadcast; .2-.6 for pods.
    let ipam = Ipam::open(dir.path(), cidr("10.9.9.0/29")).unwrap();
    let ips: Vec<Ipv4Addr> = (0..5).map(|i| ipam.allocate(&format!("s{i}")).unwrap()).collect();
    let expected: Vec<Ipv4Addr> = (2..=6).map(|h| Ipv4Addr::new(10, 9, 9, h)).collect();
    assert_eq!(ips, expected);
    let err = ipam.allocate("s5").unwrap_err();
    assert!(matches!(err, IpamError::Exhausted { capacity: 5, .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "no free pod IP address left in 10.9.9.0/29 (5 addresses, all allocated)"
    );
    // Exhaustion does not disturb existing allocations.
    assert_eq!(ipam.allocate("s3").unwrap(), Ipv4Addr::new(10, 9, 9, 5));
}

#[test]
fn allocating_the_same_sandbox_twice_returns_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = Ipam::open(dir.path(), cidr("10.9.0.0/24")).unwrap();
    let first = ipam.allocate("sandbox").unwrap();
    let other = ipam.allocate("other").unwrap();
    assert_eq!(ipam.allocate("sandbox").unwrap(), first);
    assert_ne!(first, other);
    assert_eq!(ipam.allocations().unwrap().len(), 2);
    assert_eq!(ipam.lookup("sandbox").unwrap(), Some(first));
    assert_eq!(ipam.lookup("nobody").unwrap(), None);
}

#[test]
fn allocations_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = {
        let ipam = Ipam::open(dir.path(), cidr("10.9.0.0/24")).unwrap();
        (ipam.allocate("a").unwrap(), ipam.allocate("b").unwrap())
    };
    let ipam = Ipam::open(dir.path(), cidr("10.9.0.0/24")).unwrap();
    assert_eq!(ipam.lookup("a").unwrap(), Some(a));
    assert_eq!(ipam.allocate("b").unwrap(), b);
    // The cursor persisted too: the next address follows b, even after releasing a.
    ipam.release("a").unwrap();
    let c = ipam.allocate("c").unwrap();
    assert_eq!(u32::from(c), u32::from(b) + 1);
}

#[test]
fn released_addresses_are_reused_only_after_the_range_wraps() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = Ipam::open(dir.path(), cidr("10.9.9.0/29")).unwrap();
    let a = ipam.allocate("a").unwrap(); // .2
    let b = ipam.allocate("b").unwrap(); // .3
    assert_eq!(ipam.release("a").unwrap(), Some(a));
    assert_eq!(ipam.release("a").unwrap(), None, "release is idempotent");
    assert_eq!(ipam.lookup("a").unwrap(), None);
    // .4, .5, .6 come before .2 is handed out again.
    let next: Vec<Ipv4Addr> = ["c", "d", "e"].iter().map(|s| ipam.allocate(s).unwrap()).collect();
    assert_eq!(next, [4, 5, 6].map(|h| Ipv4Addr::new(10, 9, 9, h)));
    assert_eq!(ipam.allocate("f").unwrap(), a, "wrapped around to the released address");
    assert!(matches!(ipam.allocate("g"), Err(IpamError::Exhausted { .. })));
    assert_eq!(ipam.lookup("b").unwrap(), Some(b));
}

#[test]
fn concurrent_allocations_never_collide() {
    let dir = tempfile::tempdir().unwrap();
    // 253 addresses, 16 threads x 20 sandboxes = 320 requests: 253 succeed, 67 find the
    // range exhausted. Each thread has its own `Ipam` (its own lock descriptors), as
    // separate processes would.
    let results: Vec<(String, Result<Ipv4Addr, String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|t| {
                let path = dir.path().to_path_buf();
                scope.spawn(move || {
                    let ipam = Ipam::open(path, cidr("10.9.0.0/24")).unwrap();
                    (0..20)
                        .map(|i| {
                            let id = format!("t{t}-s{i}");
                            let ip = ipam.allocate(&id).map_err(|e| e.to_string());
                            (id, ip)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let ok: Vec<&(String, Result<Ipv4Addr, String>)> =
        results.iter().filter(|(_, r)| r.is_ok()).collect();
    assert_eq!(ok.len(), 253);
    let distinct: HashSet<Ipv4Addr> = ok.iter().map(|(_, r)| *r.as_ref().unwrap()).collect();
    assert_eq!(distinct.len(), 253, "an address was handed out twice");
    for (_, r) in &results {
        if let Err(e) = r {
            assert!(e.starts_with("no free pod IP address"), "{e}");
        }
    }
    // What is on disk matches what was handed out.
    let ipam = Ipam::open(dir.path(), cidr("10.9.0.0/24")).unwrap();
    for (id, r) in &ok {
        assert_eq!(ipam.lookup(id).unwrap(), Some(*r.as_ref().unwrap()));
    }
}

#[test]
fn concurrent_allocations_of_one_sandbox_agree() {
    let dir = tempfile::tempdir().unwrap();
    let ips: HashSet<Ipv4Addr> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let path = dir.path().to_path_buf();
                scope.spawn(move || {
                    Ipam::open(path, cidr("10.9.0.0/24")).unwrap().allocate("same").unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(ips.len(), 1);
    let ipam = Ipam::open(dir.path(), cidr("10.9.0.0/24")).unwrap();
    assert_eq!(ipam.allocations().unwrap().len(), 1);
}

#[test]
fn existing_files_are_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = Ipam::open(dir.path(), cidr("10.9.9.0/29")).unwrap();
    // An allocation written by someone else (or an older run) is respected.
    std::fs::write(dir.path().join("10.9.9.2"), "foreign\n").unwrap();
    assert_eq!(ipam.allocate("mine").unwrap(), Ipv4Addr::new(10, 9, 9, 3));
    assert_eq!(std::fs::read_to_string(dir.path().join("10.9.9.2")).unwrap(), "foreign\n");
    assert_eq!(ipam.lookup("foreign").unwrap(), Some(Ipv4Addr::new(10, 9, 9, 2)));
    // A leftover temporary file from an interrupted allocation is cleaned up.
    std::fs::write(dir.path().join(".tmp-1-1"), "x\n").unwrap();
    ipam.allocate("other").unwrap();
    assert!(!dir.path().join(".tmp-1-1").exists());
}

#[test]
fn invalid_sandbox_ids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = Ipam::open(dir.path(), cidr("10.9.0.0/24")).unwrap();
    for bad in ["", "../etc", "a\nb", ".tmp-1"] {
        assert!(matches!(ipam.allocate(bad), Err(IpamError::Name(_))), "{bad:?}");
    }
    assert_eq!(ipam.allocations().unwrap(), Vec::new());
}

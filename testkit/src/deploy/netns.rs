//! A process cut off the network: a network namespace of its own.

use std::process::Command;

/// A network namespace joined to this one by a veth pair: a process started in it
/// reaches the broker and the CQL node, and is reached over HTTP, through the pair
/// only. Taking the pair's inner end down cuts it off: every packet either way is
/// dropped, connections hang instead of failing, as in a network partition. Needs
/// `ip` (iproute2) and the right to make namespaces (root); without them the test
/// fails, it is not skipped.
pub struct NetNs {
    pub(super) name: String,
    inner: String,
    outer: String,
    /// This side's address of the pair: where the isolated process finds the broker.
    pub host_ip: String,
    /// The isolated process's address.
    pub ns_ip: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| panic!("`ip {}`: {e} (install iproute2)", args.join(" ")));
    assert!(
        out.status.success(),
        "`ip {}` failed (network namespaces need root): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetNs {
    pub fn create() -> NetNs {
        let id = std::process::id();
        let (a, b) = ((id >> 6) % 250 + 1, (id & 63) * 4);
        let ns = NetNs {
            name: format!("kurz{id}"),
            inner: format!("kzi{id}"),
            outer: format!("kzo{id}"),
            host_ip: format!("10.213.{a}.{}", b + 1),
            ns_ip: format!("10.213.{a}.{}", b + 2),
        };
        ip(&["netns", "add", &ns.name]);
        ip(&["link", "add", &ns.outer, "type", "veth", "peer", "name", &ns.inner]);
        ip(&["link", "set", &ns.inner, "netns", &ns.name]);
        ip(&["addr", "add", &format!("{}/30", ns.host_ip), "dev", &ns.outer]);
        ip(&["link", "set", &ns.outer, "up"]);
        ip(&["netns", "exec", &ns.name, "ip", "addr", "add", &format!("{}/30", ns.ns_ip), "dev", &ns.inner]);
        ip(&["netns", "exec", &ns.name, "ip", "link", "set", &ns.inner, "up"]);
        ip(&["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Cuts the namespace off (`true`) or joins it again.
    pub fn cut(&self, cut: bool) {
        ip(&["netns", "exec", &self.name, "ip", "link", "set", &self.inner, if cut { "down" } else { "up" }]);
    }

    /// A command that runs `bin` in the namespace (`ip netns exec` execs it: the
    /// child's pid is the binary's own).
    pub fn command(&self, bin: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, bin]);
        c
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.outer]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

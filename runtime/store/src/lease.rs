//! Leases: who drives an execution, until when, and the fence that proves it.
//!
//! A lease alone cannot stop two processes from writing: a process can stall (GC pause,
//! suspended VM, slow disk) past its lease, another takes over, and the first wakes up still
//! believing it owns the execution. So every claim hands out a strictly increasing *fence*,
//! and every write carries it; the store rejects writes with a fence older than the current
//! one. The lease decides *when* a takeover is allowed; the fence makes it *safe*.
//!
//! Lease times are Unix milliseconds from each process's own clock, so hosts sharing a store
//! should keep their clocks in sync (NTP). Skew only moves the moment a takeover is allowed;
//! the fence keeps a takeover that came too early from interleaving writes.

use std::path::Path;

/// The token a writer presents with every save: the number of claims so far.
pub type Fence = u64;

/// The current holder of an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub execution_id: String,
    /// `<hostname>/<pid>/<random>` for the CLI (see [`owner_id`]).
    pub owner: String,
    pub fence: Fence,
    /// The lease is the owner's until this time (Unix milliseconds); after it anyone may claim.
    pub until_ms: u64,
}

impl Lease {
    pub fn expired_at(&self, now_ms: u64) -> bool {
        self.until_ms < now_ms
    }
}

/// A request to take an execution over (see [`super::LeaseStore::claim`]).
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    pub owner: &'a str,
    pub until_ms: u64,
    pub now_ms: u64,
    /// Take over even an unexpired lease, provided it still carries this fence: the caller
    /// has established that the owner is dead (see [`owner_is_dead_locally`]). Naming the
    /// fence makes this a compare-and-swap, so it cannot steal from a *new* owner that
    /// claimed in the meantime.
    pub take_over: Option<Fence>,
}

/// A fresh owner id for this process: `<hostname>/<pid>/<random>`.
///
/// The host and pid let another process on the same machine see that the owner died (and so
/// take over at once, without waiting for the lease to run out); the random part keeps ids
/// unique when the pid is reused, or when one process runs several owners.
pub fn owner_id() -> String {
    let random = uuid::Uuid::now_v7().simple().to_string();
    // The tail of a v7 UUID is random; the head is the timestamp.
    let tail = &random[random.len() - 12..];
    format!("{}/{}/{tail}", hostname(), std::process::id())
}

/// True only when `owner` (as made by [`owner_id`]) is a process on this host that is no
/// longer running. Any doubt (another host, no `/proc`, an id of another form) answers false,
/// because a wrong "dead" would let two processes drive one execution until the fence stops
/// one of them, while a wrong "alive" only means waiting for the lease to expire.
pub fn owner_is_dead_locally(owner: &str) -> bool {
    let mut parts = owner.rsplitn(3, '/');
    let (Some(_random), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    if host != hostname() || pid == std::process::id() {
        return false;
    }
    pid_is_dead(pid, Path::new("/proc"))
}

fn pid_is_dead(pid: u32, proc_root: &Path) -> bool {
    if !proc_root.join("self").exists() {
        return false;
    }
    match std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")) {
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        // A killed process stays a zombie until its parent reaps it: dead all the same. The
        // state letter follows the parenthesised command name, which may itself hold `)`.
        Ok(stat) => matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X')
        ),
    }
}

fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    // `/` separates the parts of an owner id.
    name.replace('/', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_ids_name_this_host_and_process_and_differ() {
        let a = owner_id();
        let b = owner_id();
        assert_ne!(a, b);
        let parts: Vec<&str> = a.split('/').collect();
        assert_eq!(parts.len(), 3, "{a}");
        assert_eq!(parts[0], hostname());
        assert_eq!(parts[1], std::process::id().to_string());
        assert!(!owner_is_dead_locally(&a), "this very process is alive");
    }

    #[test]
    fn a_reaped_process_is_dead_and_a_running_one_is_not() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep runs");
        let owner = format!("{}/{}/abc", hostname(), child.id());
        assert!(!owner_is_dead_locally(&owner));
        child.kill().unwrap();
        // Not yet reaped: a zombie, which counts as dead.
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(owner_is_dead_locally(&owner));
        child.wait().unwrap();
        assert!(owner_is_dead_locally(&owner));
    }

    #[test]
    fn doubt_means_alive() {
        assert!(!owner_is_dead_locally("another-host/1/abc"));
        assert!(!owner_is_dead_locally(&format!(
            "{}/notapid/abc",
            hostname()
        )));
        assert!(!owner_is_dead_locally("garbage"));
        let no_proc = tempfile::tempdir().unwrap();
        assert!(!pid_is_dead(4_000_000, no_proc.path()));
    }

    #[test]
    fn expiry_is_strictly_after_until() {
        let lease = Lease {
            execution_id: "e".into(),
            owner: "o".into(),
            fence: 1,
            until_ms: 100,
        };
        assert!(!lease.expired_at(100));
        assert!(lease.expired_at(101));
    }
}

//! A store's VLAN switch: port-based 802.1Q on a plain Linux bridge, tagging done by two tiny tc
//! eBPF programs (`bpf_skb_vlan_push` / `bpf_skb_vlan_pop`).
//!
//! Why not `bridge vlan_filtering` or VLAN devices: the lab's kernel is built without
//! `CONFIG_BRIDGE_VLAN_FILTERING` and `CONFIG_VLAN_8021Q` (`ip link add ... type vlan` and
//! `vlan_filtering 1` answer "Operation not supported"), while tc's BPF classifier is there. The
//! switch behaves as a VLAN-filtering one does for the lab's purposes:
//!
//! - an access port (towards one client) tags what the client sends with its VLAN on ingress,
//!   and on egress lets through only frames of its VLAN, untagged (everything else — another
//!   VLAN's broadcast flooded by the VLAN-unaware bridge — is dropped);
//! - the trunk (towards the router's LAN device) carries the tags in the frame: its TX VLAN
//!   offload is off, so the kernel writes the tag into the frame the router's AF_XDP socket
//!   reads (a tag left in the skb's metadata would be invisible to XDP);
//! - an untagged network's access port passes only untagged frames.
//!
//! The programs are compiled with `clang -target bpf` once per VLAN id into the lab's work
//! directory (clang is also what the router's AF_XDP crate builds with).

use std::path::{Path, PathBuf};

use crate::netns::{Namespace, run};

const SOURCE: &str = r#"
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#define SEC(n) __attribute__((section(n), used))
static long (*skb_vlan_push)(struct __sk_buff *, __u16, __u16) = (void *)BPF_FUNC_skb_vlan_push;
static long (*skb_vlan_pop)(struct __sk_buff *) = (void *)BPF_FUNC_skb_vlan_pop;

/* Access port ingress: tag with VID. A frame that is already tagged has no business here. */
SEC("tc") int tag(struct __sk_buff *skb) {
    if (skb->vlan_present) return TC_ACT_SHOT;
    if (skb_vlan_push(skb, __builtin_bswap16(0x8100), VID)) return TC_ACT_SHOT;
    return TC_ACT_OK;
}

/* Access port egress: only VID, untagged. */
SEC("tc") int untag(struct __sk_buff *skb) {
    if (!skb->vlan_present || (skb->vlan_tci & 0x0fff) != VID) return TC_ACT_SHOT;
    if (skb_vlan_pop(skb)) return TC_ACT_SHOT;
    return TC_ACT_OK;
}

/* Untagged access port egress: no tagged frames. */
SEC("tc") int plain(struct __sk_buff *skb) {
    return skb->vlan_present ? TC_ACT_SHOT : TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
"#;

/// The compiled programs, one object per VLAN id, in a directory.
pub struct Programs {
    dir: PathBuf,
}

impl Programs {
    pub fn new(dir: &Path) -> Result<Programs, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(dir.join("vlan.c"), SOURCE).map_err(|e| e.to_string())?;
        Ok(Programs {
            dir: dir.to_path_buf(),
        })
    }

    /// The object for `vid` (0: untagged), compiled on first use.
    fn object(&self, vid: u16) -> Result<PathBuf, String> {
        let obj = self.dir.join(format!("vlan{vid}.o"));
        if !obj.exists() {
            let src = self.dir.join("vlan.c");
            let arch = format!("-I/usr/include/{}-linux-gnu", std::env::consts::ARCH);
            run(
                "clang",
                &[
                    "-O2",
                    "-g",
                    "-target",
                    "bpf",
                    &arch,
                    &format!("-DVID={vid}"),
                    "-c",
                    &src.display().to_string(),
                    "-o",
                    &obj.display().to_string(),
                ],
            )?;
        }
        Ok(obj)
    }

    /// Makes `dev` (in `ns`) an access port of VLAN `vid`, or an untagged port with `None`.
    pub fn access_port(&self, ns: &Namespace, dev: &str, vid: Option<u16>) -> Result<(), String> {
        let obj = self.object(vid.unwrap_or(0))?;
        let obj = obj.display().to_string();
        ns.exec("tc", &["qdisc", "add", "dev", dev, "clsact"])?;
        let attach = |hook: &str, program: &str| {
            ns.exec(
                "tc",
                &[
                    "filter", "add", "dev", dev, hook, "bpf", "da", "obj", &obj, "sec", "tc",
                    "program", program,
                ],
            )
            .map(drop)
        };
        match vid {
            Some(_) => {
                attach("ingress", "tag")?;
                attach("egress", "untag")
            }
            None => attach("egress", "plain"),
        }
    }

    /// Makes `dev` (a kernel router's LAN device) the end of VLAN `vid`: tagged frames of
    /// `vid` in, untagged to the kernel; the kernel's frames out tagged.
    pub fn endpoint(&self, ns: &Namespace, dev: &str, vid: u16) -> Result<(), String> {
        let obj = self.object(vid)?.display().to_string();
        ns.exec("tc", &["qdisc", "add", "dev", dev, "clsact"])?;
        for (hook, program) in [("ingress", "untag"), ("egress", "tag")] {
            ns.exec(
                "tc",
                &[
                    "filter", "add", "dev", dev, hook, "bpf", "da", "obj", &obj, "sec", "tc",
                    "program", program,
                ],
            )?;
        }
        self.trunk_port(ns, dev)
    }

    /// Makes `dev` a trunk: tags travel in the frame.
    pub fn trunk_port(&self, ns: &Namespace, dev: &str) -> Result<(), String> {
        ns.exec("ethtool", &["-K", dev, "txvlan", "off"]).map(drop)
    }
}

// SPDX-License-Identifier: (Apache-2.0 OR GPL-2.0-only)
//
// The router's in-kernel fast path (see cnf/src/io/fastpath.rs, which loads it, and
// cnf/src/pipeline/offload.rs, which decides what it may forward).
//
// Every frame an interface receives runs through `signpost_fastpath`. A frame of an established,
// offloaded session (Ethernet [+ one 802.1Q tag] / IPv4 without options / TCP or UDP) whose
// (ingress interface, 5-tuple) is in `sessions` is rewritten here exactly as the session pipeline
// would rewrite it — TTL decrement, NAT of addresses and ports with incremental checksums, DSCP
// mark, Ethernet addresses and VLAN tag — counted in its entry, and redirected to its egress
// device through `devices`, never copied to user space. Every other frame (a miss, anything
// unusual, anything that changes session state: SYN/FIN/RST, SVR metadata, TTL <= 1, options,
// fragments, too big) goes untouched to the queue's AF_XDP socket in `xsks_map`, the slow path,
// as libbpf's default program would send it; the reason is counted in `stats`.
//
// The arithmetic mirrors cnf/src/packet/checksum.rs step by step (same operations, same order),
// so the bytes leaving here are the bytes the pipeline would produce; the differential test
// (cnf/tests/fastpath_program.rs) runs this program with BPF_PROG_TEST_RUN against the pipeline.
//
// Self-contained on purpose: only the kernel's stable BPF ABI below, no system headers, so the
// object builds the same wherever clang can target BPF.

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

// --- The BPF ABI (include/uapi/linux/bpf.h) --------------------------------------------------

struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};

enum xdp_action { XDP_ABORTED = 0, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT };

#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_DEVMAP 14
#define BPF_MAP_TYPE_XSKMAP 17
#define BPF_F_NO_PREALLOC 1

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)3;
static long (*bpf_xdp_adjust_head)(struct xdp_md *ctx, int delta) = (void *)44;
static long (*bpf_redirect_map)(void *map, __u32 key, __u64 flags) = (void *)51;
static long (*bpf_xdp_adjust_tail)(struct xdp_md *ctx, int delta) = (void *)65;
// CLOCK_MONOTONIC at tick resolution (Linux 5.11+): idle timers need no better, and it reads no
// clock source.
static __u64 (*bpf_ktime_get_coarse_ns)(void) = (void *)160;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#define INLINE static inline __attribute__((always_inline))

// --- What the runtime and this program share (mirrored in cnf/src/io/fastpath.rs) -----------

// A session direction as it arrives: ingress interface and 5-tuple, addresses and ports in
// network byte order.
struct flow_key {
	__u32 ifindex;
	__u32 src;
	__u32 dst;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

// What to do with it. Rewrite fields in network byte order; `vlan`, `max_len` in host order.
struct flow_entry {
	__u32 src;
	__u32 dst;
	__u16 sport;
	__u16 dport;
	// Egress 802.1Q VLAN id; 0 sends the frame untagged.
	__u16 vlan;
	// The largest IP packet forwarded here (the egress MTU); larger ones go to the slow path.
	__u16 max_len;
	__u8 dst_mac[6];
	__u8 src_mac[6];
	// The ingress port's own address: frames sent to another one are the slow path's to drop.
	__u8 in_mac[6];
	// DSCP to mark (0..63), or NO_DSCP to leave the DS field alone.
	__u8 dscp;
	__u8 pad;
	// Key of the egress device in `devices`.
	__u32 egress_port;
	// Opaque to the program: which worker and session installed the entry.
	__u64 owner;
	// Written here: packets and bytes (IP total length as received) forwarded, and when the
	// last one was (bpf_ktime_get_coarse_ns: CLOCK_MONOTONIC at tick resolution).
	__u64 packets;
	__u64 bytes;
	__u64 last_seen_ns;
};

_Static_assert(sizeof(struct flow_key) == 20, "flow_key layout is shared with Rust");
_Static_assert(sizeof(struct flow_entry) == 72, "flow_entry layout is shared with Rust");

#define NO_DSCP 0xff

// Counters in `stats` (per CPU), in the order of `Stat` in cnf/src/io/fastpath.rs.
enum stat {
	STAT_FORWARDED_PACKETS = 0,
	STAT_FORWARDED_BYTES,
	// Punts to the slow path, by reason.
	PUNT_NOT_IPV4,
	PUNT_MALFORMED,
	PUNT_IP_OPTIONS,
	PUNT_FRAGMENT,
	PUNT_PROTOCOL,
	PUNT_NO_SESSION,
	PUNT_NOT_FOR_US,
	PUNT_TCP_FLAGS,
	PUNT_SVR_COOKIE,
	PUNT_TTL,
	PUNT_TOO_BIG,
	PUNT_NO_ROOM,
	STAT_COUNT,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 131072);
	__type(key, struct flow_key);
	__type(value, struct flow_entry);
} sessions SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 64);
	__uint(key_size, 4);
	__uint(value_size, 4);
} devices SEC(".maps");

// One per interface (each interface loads its own copy of the program): queue id -> AF_XDP
// socket. libbpf inserts the sockets by this name.
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__uint(key_size, 4);
	__uint(value_size, 4);
} xsks_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

// --- Helpers ---------------------------------------------------------------------------------

#define ETH_P_IP 0x0800
#define ETH_P_8021Q 0x8100
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04

// The SVR metadata cookie (cnf/src/svr/wire.rs `COOKIE`), as the first 8 payload bytes.
#define SVR_COOKIE_HI 0x4C48DBC6u
#define SVR_COOKIE_LO 0xDDF6670Cu

INLINE __u16 be16(const __u8 *p) { return (__u16)((p[0] << 8) | p[1]); }
INLINE __u32 be32(const __u8 *p) {
	return ((__u32)p[0] << 24) | ((__u32)p[1] << 16) | ((__u32)p[2] << 8) | p[3];
}
INLINE void put16(__u8 *p, __u16 v) { p[0] = v >> 8; p[1] = v; }
INLINE void put32(__u8 *p, __u32 v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }

INLINE void count(__u32 which, __u64 n) {
	__u64 *v = bpf_map_lookup_elem(&stats, &which);
	if (v)
		*v += n;
}

// checksum.rs `fold`: the Rust loop runs until the sum fits 16 bits; four rounds always get
// there from a sum of a few 32-bit words, and a round on a sum that fits changes nothing.
INLINE __u16 fold(__u64 acc) {
#pragma unroll
	for (int i = 0; i < 4; i++)
		acc = (acc & 0xffff) + (acc >> 16);
	return (__u16)acc;
}

// checksum.rs `update_u16` (RFC 1624: HC' = ~(~HC + ~m + m')).
INLINE __u16 update_u16(__u16 sum, __u16 old, __u16 new) {
	__u64 acc = (__u64)(__u16)~sum + (__u16)~old + new;
	return (__u16)~fold(acc);
}

// checksum.rs `update_u32s` for the words of the IPv4 addresses (and the ports).
INLINE __u16 update_addrs(__u16 sum, __u32 os, __u32 od, __u32 ns, __u32 nd) {
	__u64 acc = (__u64)(__u16)~sum;
	acc += (__u64)(__u32)~os + ns;
	acc += (__u64)(__u32)~od + nd;
	return (__u16)~fold(acc);
}

INLINE __u16 update_tuple(__u16 sum, __u32 os, __u32 od, __u32 op, __u32 ns, __u32 nd, __u32 np) {
	__u64 acc = (__u64)(__u16)~sum;
	acc += (__u64)(__u32)~os + ns;
	acc += (__u64)(__u32)~od + nd;
	acc += (__u64)(__u32)~op + np;
	return (__u16)~fold(acc);
}

INLINE int punt(struct xdp_md *ctx, __u32 reason) {
	count(reason, 1);
	// As libbpf's default program: the queue's socket, or the kernel stack when it has none.
	return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
}

// --- The program -----------------------------------------------------------------------------

SEC("xdp")
int signpost_fastpath(struct xdp_md *ctx)
{
	__u8 *data = (__u8 *)(long)ctx->data;
	__u8 *end = (__u8 *)(long)ctx->data_end;

	if (data + 14 > end)
		return punt(ctx, PUNT_MALFORMED);
	__u32 l2 = 14;
	__u16 type = be16(data + 12);
	if (type == ETH_P_8021Q) {
		if (data + 18 > end)
			return punt(ctx, PUNT_MALFORMED);
		type = be16(data + 16);
		l2 = 18;
	}
	if (type != ETH_P_IP)
		return punt(ctx, PUNT_NOT_IPV4);
	__u8 *ip = data + l2;
	if (ip + 20 > end)
		return punt(ctx, PUNT_MALFORMED);
	if (ip[0] != 0x45)
		return punt(ctx, (ip[0] >> 4) == 4 ? PUNT_IP_OPTIONS : PUNT_NOT_IPV4);
	__u16 total = be16(ip + 2);
	if (be16(ip + 6) & 0x3fff)
		return punt(ctx, PUNT_FRAGMENT);
	__u8 proto = ip[9];
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return punt(ctx, PUNT_PROTOCOL);
	__u8 *l4 = ip + 20;
	__u32 l4_header;
	if (proto == IPPROTO_TCP) {
		if (l4 + 20 > end)
			return punt(ctx, PUNT_MALFORMED);
		l4_header = (l4[12] >> 4) * 4;
		if (l4_header < 20)
			return punt(ctx, PUNT_MALFORMED);
	} else {
		if (l4 + 8 > end)
			return punt(ctx, PUNT_MALFORMED);
		l4_header = 8;
	}
	// The pipeline's views refuse a UDP length below the header or past the IP packet.
	if (proto == IPPROTO_UDP) {
		__u16 udp_len = be16(l4 + 4);
		if (udp_len < 8 || udp_len > total - 20)
			return punt(ctx, PUNT_MALFORMED);
	}
	// The whole IP packet must be in the frame (link padding may follow it).
	if (total < 20 + l4_header || ip + total > end)
		return punt(ctx, PUNT_MALFORMED);

	struct flow_key key = {
		.ifindex = ctx->ingress_ifindex,
		.proto = proto,
	};
	__builtin_memcpy(&key.src, ip + 12, 4);
	__builtin_memcpy(&key.dst, ip + 16, 4);
	__builtin_memcpy(&key.sport, l4, 2);
	__builtin_memcpy(&key.dport, l4 + 2, 2);
	struct flow_entry *e = bpf_map_lookup_elem(&sessions, &key);
	if (!e)
		return punt(ctx, PUNT_NO_SESSION);

	if (be32(data) != be32(e->in_mac) || be16(data + 4) != be16(e->in_mac + 4))
		return punt(ctx, PUNT_NOT_FOR_US);
	if (proto == IPPROTO_TCP && (l4[13] & (TCP_FIN | TCP_SYN | TCP_RST))) {
		// A FIN or RST ends this direction's entry here and now: the close's last ACK
		// (`Closing` -> `Closed` in the session table) then reaches the pipeline too, even when
		// the whole close is over before the runtime's next visit. The runtime finds the entry
		// gone and loses at most the counts since its last read.
		if (l4[13] & (TCP_FIN | TCP_RST))
			bpf_map_delete_elem(&sessions, &key);
		return punt(ctx, PUNT_TCP_FLAGS);
	}
	// A payload that begins with the SVR cookie is metadata or needs the false-positive
	// marker: the slow path's.
	if (total >= 20 + l4_header + 8) {
		__u8 *payload = l4 + (l4_header & 0x3c);
		if (payload + 8 > end)
			return punt(ctx, PUNT_MALFORMED);
		if (be32(payload) == SVR_COOKIE_HI && be32(payload + 4) == SVR_COOKIE_LO)
			return punt(ctx, PUNT_SVR_COOKIE);
	}
	if (ip[8] <= 1)
		return punt(ctx, PUNT_TTL);
	if (total > e->max_len)
		return punt(ctx, PUNT_TOO_BIG);

	// Room first, so that a refusal leaves the packet as it came: drop link padding after the
	// IP packet, then move the frame's start for the egress header (14, or 18 with a tag).
	__u16 vlan = e->vlan;
	__u32 out_l2 = vlan ? 18 : 14;
	long pad = (long)(end - data) - (long)l2 - (long)total;
	if (pad > 0 && (pad > 0xffff || bpf_xdp_adjust_tail(ctx, -(int)pad)))
		return punt(ctx, PUNT_NO_ROOM);
	if (out_l2 != l2 && bpf_xdp_adjust_head(ctx, (int)l2 - (int)out_l2))
		return punt(ctx, PUNT_NO_ROOM);
	data = (__u8 *)(long)ctx->data;
	end = (__u8 *)(long)ctx->data_end;
	ip = data + out_l2;
	l4 = ip + 20;
	if (l4 + 20 > end && (proto == IPPROTO_TCP || l4 + 8 > end))
		return XDP_ABORTED;

	// The rewrite, in the pipeline's order: TTL, NAT (IP header, L4), DSCP.
	__u16 ipsum = be16(ip + 10);
	__u16 old_word = be16(ip + 8);
	ip[8] -= 1;
	ipsum = update_u16(ipsum, old_word, be16(ip + 8));

	__u32 os = be32(ip + 12), od = be32(ip + 16);
	__u32 ns = __builtin_bswap32(e->src), nd = __builtin_bswap32(e->dst);
	__u32 oports = be32(l4);
	__u32 nports = ((__u32)__builtin_bswap16(e->sport) << 16) | __builtin_bswap16(e->dport);
	ipsum = update_addrs(ipsum, os, od, ns, nd);
	put32(ip + 12, ns);
	put32(ip + 16, nd);
	if (proto == IPPROTO_TCP) {
		if (l4 + 20 > end)
			return XDP_ABORTED;
		__u16 sum = be16(l4 + 16);
		sum = update_tuple(sum, os, od, oports, ns, nd, nports);
		put16(l4 + 16, sum);
	} else {
		// A UDP checksum of 0 means "none" and stays so; a computed 0 is sent as 0xffff.
		__u16 sum = be16(l4 + 6);
		if (sum != 0) {
			sum = update_tuple(sum, os, od, oports, ns, nd, nports);
			put16(l4 + 6, sum ? sum : 0xffff);
		}
	}
	put32(l4, nports);
	if (e->dscp != NO_DSCP) {
		__u16 old = be16(ip);
		__u16 new = (old & 0xff03) | ((__u16)(e->dscp & 0x3f) << 2);
		if (new != old) {
			put16(ip, new);
			ipsum = update_u16(ipsum, old, new);
		}
	}
	put16(ip + 10, ipsum);

	__builtin_memcpy(data, e->dst_mac, 6);
	__builtin_memcpy(data + 6, e->src_mac, 6);
	if (vlan) {
		put16(data + 12, ETH_P_8021Q);
		put16(data + 14, vlan & 0x0fff);
		put16(data + 16, ETH_P_IP);
	} else {
		put16(data + 12, ETH_P_IP);
	}

	__sync_fetch_and_add(&e->packets, 1);
	__sync_fetch_and_add(&e->bytes, total);
	e->last_seen_ns = bpf_ktime_get_coarse_ns();
	count(STAT_FORWARDED_PACKETS, 1);
	count(STAT_FORWARDED_BYTES, total);
	return bpf_redirect_map(&devices, e->egress_port, 0);
}

char _license[] SEC("license") = "Dual BSD/GPL";

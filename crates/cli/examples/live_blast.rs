//! The live benchmark's traffic generator (BENCHMARKS.md, "Live forwarding"):
//! sends one UDP/IPv4 frame over and over on an interface through an
//! AF_PACKET socket (sendmmsg, 64 a call, qdisc bypassed) for a number of
//! seconds, then prints how many went. Run it inside the sender's namespace:
//!
//!   ip netns exec skiff-a target/release/examples/live_blast a0 SRC_MAC DST_MAC 5
//!
//! (the frame: SRC_MAC -> DST_MAC, 10.9.0.1:9 -> 10.9.0.2:9, 64 bytes).
#![allow(unsafe_code)]

use std::time::{Duration, Instant};

fn mac(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (i, p) in s.split(':').take(6).enumerate() {
        m[i] = u8::from_str_radix(p, 16).unwrap_or(0);
    }
    m
}

fn frame(src: [u8; 6], dst: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = [
        0x45, 0, 0, 46, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 9, 0, 1, 10, 9, 0, 2,
    ];
    f[14..34].copy_from_slice(&ip);
    let mut sum: u32 = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    f[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f[34..42].copy_from_slice(&[0, 9, 0, 9, 0, 26, 0, 0]);
    f
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 5 {
        eprintln!("usage: live_blast IFACE SRC_MAC DST_MAC SECONDS");
        std::process::exit(2);
    }
    let f = frame(mac(&a[2]), mac(&a[3]));
    let secs: u64 = a[4].parse().unwrap_or(5);
    let name = std::ffi::CString::new(a[1].as_str()).unwrap_or_default();
    // SAFETY: plain system calls on buffers that outlive them.
    unsafe {
        let ifindex = libc::if_nametoindex(name.as_ptr());
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        if ifindex == 0 || fd < 0 {
            eprintln!("live_blast: {}: {}", a[1], std::io::Error::last_os_error());
            std::process::exit(1);
        }
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            20,
            (&one as *const libc::c_int).cast(),
            4,
        );
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        let mut iov = libc::iovec {
            iov_base: f.as_ptr() as *mut _,
            iov_len: f.len(),
        };
        let mut msgs: Vec<libc::mmsghdr> = (0..64)
            .map(|_| {
                let mut m: libc::mmsghdr = std::mem::zeroed();
                m.msg_hdr.msg_iov = &mut iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let end = Instant::now() + Duration::from_secs(secs);
        let mut sent: u64 = 0;
        while Instant::now() < end {
            let r = libc::sendmmsg(fd, msgs.as_mut_ptr(), 64, 0);
            if r > 0 {
                sent += r as u64;
            }
        }
        println!("sent {sent} frames in {secs} s: {} pps", sent / secs.max(1));
    }
}

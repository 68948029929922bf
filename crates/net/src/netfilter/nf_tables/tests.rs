use super::expr::NftVerdict;
use super::expr::{CmpOp, MetaKey, NumgenKind, PayloadBase, NFT_REG_1, NFT_REG_VERDICT};
use super::set::{ElemData, SetData, SetElem};
use super::*;
use crate::netfilter::{nf_hook, NfHookState, NfSkb, NfVerdict};

/// IPv4 + UDP from 10.0.0.`src` to 10.0.0.9:53 (28 bytes).
fn udp(src: u8) -> Vec<u8> {
    let mut p = vec![
        0x45, 0, 0, 28, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, src, 10, 0, 0, 9,
    ];
    p.extend_from_slice(&[0x0f, 0xa0, 0, 53, 0, 8, 0, 0]);
    p
}

fn state(hook: NfHook) -> NfHookState {
    NfHookState {
        hook,
        pf: NfProto::Ipv4,
        in_ifindex: Some(2),
        out_ifindex: None,
        in_name: Some(crate::netfilter::IfName::new("eth0")),
        out_name: None,
        masq_addr: None,
        redirect_addr: None,
        now_ns: 0,
        addr_types: (0, 0),
    }
}

fn run(nf: &mut Netfilter, pkt: &mut Vec<u8>, mark: &mut u32) -> NfVerdict {
    let mut nfct = None;
    let mut skb = NfSkb {
        pkt,
        mark,
        nfct: &mut nfct,
    };
    nf_hook(nf, &mut skb, &state(NfHook::LocalIn))
}

fn input_chain(nf: &mut Netfilter, policy: Policy) -> (usize, usize) {
    let t = add_table(nf, NftFamily::Ip, "filter");
    let base = NftBaseChain {
        ty: ChainType::Filter,
        hook: NfHook::LocalIn,
        priority: 0,
        prio_text: "filter".into(),
        policy,
    };
    let c = add_chain(nf, t, "input", Some(base)).unwrap();
    (t, c)
}

fn saddr_is(last: u8) -> Vec<NftExpr> {
    vec![
        NftExpr::Payload {
            base: PayloadBase::Network,
            offset: 12,
            len: 4,
            dreg: NFT_REG_1,
        },
        NftExpr::Cmp {
            op: CmpOp::Eq,
            sreg: NFT_REG_1,
            data: vec![10, 0, 0, last],
        },
    ]
}

#[test]
fn a_matching_rule_counts_and_drops_others_take_the_policy() {
    let mut nf = Netfilter::new();
    let (t, c) = input_chain(&mut nf, Policy::Accept);
    let mut e = saddr_is(1);
    e.push(NftExpr::Counter(Default::default()));
    e.push(NftExpr::Verdict(NftVerdict::Drop));
    add_rule(
        &mut nf,
        t,
        c,
        e,
        vec![
            RuleText::Text("ip saddr 10.0.0.1".into()),
            RuleText::Counter,
            RuleText::Text("drop".into()),
        ],
        None,
    )
    .unwrap();
    let mut mark = 0;
    assert_eq!(run(&mut nf, &mut udp(1), &mut mark), NfVerdict::Drop);
    assert_eq!(run(&mut nf, &mut udp(2), &mut mark), NfVerdict::Accept);
    let r = &nf.nft.tables[t].chains[c].rules[0];
    assert_eq!(
        r.counters().collect::<Vec<_>>(),
        [crate::netfilter::x_tables::XtCounters { pcnt: 1, bcnt: 28 }]
    );
    assert_eq!(
        dump::rule_text(r),
        "ip saddr 10.0.0.1 counter packets 1 bytes 28 drop"
    );
}

#[test]
fn a_vmap_on_numgen_inc_jumps_in_turn_and_return_comes_back() {
    let mut nf = Netfilter::new();
    let (t, c) = input_chain(&mut nf, Policy::Drop);
    let a = add_chain(&mut nf, t, "a", None).unwrap();
    let b = add_chain(&mut nf, t, "b", None).unwrap();
    // a: mark 1; b: mark 2; then return to input, which accepts.
    for (ch, m) in [(a, 1u32), (b, 2)] {
        let e = vec![
            NftExpr::Immediate {
                dreg: NFT_REG_1,
                data: m.to_ne_bytes().to_vec(),
            },
            NftExpr::MetaSet {
                key: MetaKey::Mark,
                sreg: NFT_REG_1,
            },
            NftExpr::Verdict(NftVerdict::Return),
        ];
        add_rule(&mut nf, t, ch, e, vec![], None).unwrap();
    }
    let mut s = NftSet::new("__map0", vec![4], false, SetData::Verdict);
    s.anonymous = true;
    for (k, to) in [(0u32, a), (1, b)] {
        let key = k.to_ne_bytes().to_vec();
        s.insert(SetElem {
            key: key.clone(),
            key_end: key,
            data: ElemData::Verdict(NftVerdict::Jump(to)),
            text: String::new(),
        })
        .unwrap();
    }
    let set = add_set(&mut nf, t, s).unwrap();
    let e = vec![
        NftExpr::Numgen {
            dreg: NFT_REG_1,
            modulus: 2,
            offset: 0,
            kind: NumgenKind::Inc { counter: 1 },
        },
        NftExpr::Lookup {
            sreg: NFT_REG_1,
            set,
            dreg: Some(NFT_REG_VERDICT),
            invert: false,
        },
    ];
    add_rule(&mut nf, t, c, e, vec![], None).unwrap();
    add_rule(
        &mut nf,
        t,
        c,
        vec![NftExpr::Verdict(NftVerdict::Accept)],
        vec![],
        None,
    )
    .unwrap();
    let marks: Vec<(NfVerdict, u32)> = (0..3)
        .map(|_| {
            let mut mark = 0;
            let v = run(&mut nf, &mut udp(1), &mut mark);
            (v, mark)
        })
        .collect();
    assert_eq!(
        marks,
        [
            (NfVerdict::Accept, 1),
            (NfVerdict::Accept, 2),
            (NfVerdict::Accept, 1)
        ]
    );
}

#[test]
fn a_jump_back_to_the_calling_chain_is_eloop() {
    let mut nf = Netfilter::new();
    let (t, c) = input_chain(&mut nf, Policy::Accept);
    let a = add_chain(&mut nf, t, "a", None).unwrap();
    add_rule(
        &mut nf,
        t,
        c,
        vec![NftExpr::Verdict(NftVerdict::Jump(a))],
        vec![],
        None,
    )
    .unwrap();
    let e = add_rule(
        &mut nf,
        t,
        a,
        vec![NftExpr::Verdict(NftVerdict::Goto(c))],
        vec![],
        None,
    );
    assert_eq!(e, Err(NftError::Loop("input".into())));
    assert!(nf.nft.tables[t].chains[a].rules.is_empty());
}

#[test]
fn an_interval_set_matches_each_field_in_its_range() {
    let mut s = NftSet::new("s", vec![4, 4], true, SetData::None);
    let key = |a: [u8; 4], p: u16| {
        let mut k = a.to_vec();
        k.extend_from_slice(&p.to_be_bytes());
        k.extend_from_slice(&[0, 0]);
        k
    };
    s.insert(SetElem {
        key: key([10, 0, 0, 0], 80),
        key_end: key([10, 255, 255, 255], 90),
        data: ElemData::None,
        text: String::new(),
    })
    .unwrap();
    assert!(s.lookup(&key([10, 1, 2, 3], 85)).is_some());
    assert!(s.lookup(&key([10, 1, 2, 3], 91)).is_none());
    assert!(s.lookup(&key([11, 0, 0, 0], 80)).is_none());
}

#[test]
fn flush_ruleset_unregisters_the_chains_hooks() {
    let mut nf = Netfilter::new();
    input_chain(&mut nf, Policy::Drop);
    assert!(nf.hook_active(NfProto::Ipv4, NfHook::LocalIn, None));
    flush_ruleset(&mut nf);
    assert!(!nf.hook_active(NfProto::Ipv4, NfHook::LocalIn, None));
    assert!(nf.nft.tables.is_empty());
}

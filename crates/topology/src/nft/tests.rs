use skiff_net::netfilter::nf_tables::expr::{
    CmpOp, MetaKey, NftVerdict, PayloadBase, NFT_REG_1, NFT_REG_VERDICT,
};
use skiff_net::netfilter::nf_tables::NftExpr;
use skiff_net::netfilter::x_tables::Policy;
use skiff_net::netfilter::{NfHook, NfProto};

use super::*;

fn load(text: &str) -> Result<Netfilter, NftParseError> {
    let mut nf = Netfilter::new();
    apply(&mut nf, &parse(text)?)?;
    Ok(nf)
}

fn err(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("{text} loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_match_compiles_to_payload_cmp_with_the_l4proto_dependency() {
    let nf = load("table ip t {\n\tchain c {\n\t\ttype filter hook input priority filter; policy drop;\n\t\tip daddr 10.96.0.10 tcp dport 80 accept\n\t}\n}\n").unwrap();
    let t = &nf.nft.tables[0];
    let c = &t.chains[0];
    let b = c.base.as_ref().unwrap();
    assert_eq!(
        (b.hook, b.priority, b.policy),
        (NfHook::LocalIn, 0, Policy::Drop)
    );
    use PayloadBase::*;
    assert_eq!(
        c.rules[0].exprs,
        [
            NftExpr::Payload {
                base: Network,
                offset: 16,
                len: 4,
                dreg: NFT_REG_1
            },
            NftExpr::Cmp {
                op: CmpOp::Eq,
                sreg: NFT_REG_1,
                data: vec![10, 96, 0, 10]
            },
            NftExpr::Meta {
                key: MetaKey::L4proto,
                dreg: NFT_REG_1
            },
            NftExpr::Cmp {
                op: CmpOp::Eq,
                sreg: NFT_REG_1,
                data: vec![6]
            },
            NftExpr::Payload {
                base: Transport,
                offset: 2,
                len: 2,
                dreg: NFT_REG_1
            },
            NftExpr::Cmp {
                op: CmpOp::Eq,
                sreg: NFT_REG_1,
                data: vec![0, 80]
            },
            NftExpr::Verdict(NftVerdict::Accept),
        ]
    );
    assert!(nf.hook_active(NfProto::Ipv4, NfHook::LocalIn, None));
}

#[test]
fn a_concatenated_vmap_loads_into_consecutive_registers() {
    let text = "define VIP = 10.96.0.10\ntable ip kp {\n\tchain svc {\n\t\tmeta l4proto tcp dnat to 10.0.1.11:8080\n\t}\n\tmap m {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t\telements = { $VIP . tcp . 80 : goto svc }\n\t}\n\tchain services {\n\t\tip daddr . meta l4proto . th dport vmap @m\n\t}\n}\n";
    let nf = load(text).unwrap();
    let t = &nf.nft.tables[0];
    let s = &t.sets[0];
    assert_eq!(s.key_len, 12);
    assert_eq!(s.elems[0].key, [10, 96, 0, 10, 6, 0, 0, 0, 0, 80, 0, 0]);
    let r = &t.chains[t.chain_index("services").unwrap()].rules[0];
    assert_eq!(
        r.exprs,
        [
            NftExpr::Payload {
                base: PayloadBase::Network,
                offset: 16,
                len: 4,
                dreg: 4
            },
            NftExpr::Meta {
                key: MetaKey::L4proto,
                dreg: 5
            },
            NftExpr::Payload {
                base: PayloadBase::Transport,
                offset: 2,
                len: 2,
                dreg: 6
            },
            NftExpr::Lookup {
                sreg: NFT_REG_1,
                set: 0,
                dreg: Some(NFT_REG_VERDICT),
                invert: false
            },
        ]
    );
}

#[test]
fn errors_name_the_line_column_and_word() {
    assert_eq!(
        err("table ip t {\n\tchain c {\n\t\tfoo bar\n\t}\n}\n"),
        "nft: line 3:3: unknown expression 'foo'"
    );
    assert_eq!(
        err("table ip t {\n\tchain c {\n\t\tlimit rate 10/second accept\n\t}\n}\n"),
        "nft: line 3:3: not supported: nft limit statement (docs/differences.md)"
    );
    assert_eq!(
        err("table ip t {\n\tchain c {\n\t\tjump nowhere\n\t}\n}\n"),
        "nft: line 3:8: Could not process rule: No such file or directory: chain 'nowhere'"
    );
    assert_eq!(
        err("table ip t {\n\tchain c {\n\t\ttype nat hook output priority dstnat;\n\t}\n}\n"),
        "nft: line 3:33: invalid priority expression value in this context."
    );
    assert_eq!(err("add rule ip t c accept\n"), "nft: line 1:15: Could not process rule: No such file or directory: table `ip t' does not exist");
    assert_eq!(
        err("table ip t {\n\tchain c {\n\t\tip saddr $X\n\t}\n}\n"),
        "nft: line 3:12: unknown identifier 'X'"
    );
}

#[test]
fn flags_lists_prefixes_ranges_and_anonymous_sets() {
    let text = "table inet f {\n\tchain c {\n\t\tct state established,related accept\n\t\tip saddr != 10.0.0.0/16 tcp dport { 22, 80-90 } drop\n\t}\n}\n";
    let nf = load(text).unwrap();
    let t = &nf.nft.tables[0];
    let r = &t.chains[0].rules;
    assert_eq!(
        r[0].exprs[1],
        NftExpr::Bitwise {
            sreg: NFT_REG_1,
            dreg: NFT_REG_1,
            mask: 6u32.to_ne_bytes().to_vec(),
            xor: vec![0; 4]
        }
    );
    assert_eq!(
        r[0].exprs[2],
        NftExpr::Cmp {
            op: CmpOp::Neq,
            sreg: NFT_REG_1,
            data: vec![0; 4]
        }
    );
    // inet: `ip saddr` depends on meta nfproto ipv4.
    assert_eq!(
        r[1].exprs[0],
        NftExpr::Meta {
            key: MetaKey::Nfproto,
            dreg: NFT_REG_1
        }
    );
    assert_eq!(
        r[1].exprs[3],
        NftExpr::Bitwise {
            sreg: NFT_REG_1,
            dreg: NFT_REG_1,
            mask: vec![255, 255, 0, 0],
            xor: vec![0; 4]
        }
    );
    assert_eq!(
        r[1].exprs[4],
        NftExpr::Cmp {
            op: CmpOp::Neq,
            sreg: NFT_REG_1,
            data: vec![10, 0, 0, 0]
        }
    );
    let anon = &t.sets[0];
    assert!(anon.anonymous && anon.interval);
    assert_eq!(anon.elems.len(), 2);
    assert_eq!(
        (anon.elems[1].key.clone(), anon.elems[1].key_end.clone()),
        (vec![0, 80, 0, 0], vec![0, 90, 0, 0])
    );
}

#[test]
fn an_error_is_placed_at_its_line_and_column_in_the_file() {
    let start = crate::error::Loc {
        line: 10,
        col: 8,
        field: "netns.host.nft".into(),
    };
    let at = |line, col| NftParseError {
        line,
        col,
        msg: String::new(),
    };
    let first = loc_in_file(&start, &at(1, 3));
    let third = loc_in_file(&start, &at(3, 5));
    assert_eq!(
        (first.line, first.col, third.line, third.col),
        (10, 10, 12, 5)
    );
}

//! Object::parse never panics: random bytes and corrupted clang-built objects.
mod common;
use proptest::prelude::*;
use skiff_object::Object;
use std::sync::OnceLock;

fn seed_object() -> Option<&'static Vec<u8>> {
    static OBJ: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    OBJ.get_or_init(|| {
        let src = format!("{}
struct {{ __uint(type, BPF_MAP_TYPE_HASH); __type(key, __u32); __type(value, __u64); __uint(max_entries, 4); }} h SEC(\".maps\");
int tail(struct xdp_md *c);
struct {{ __uint(type, BPF_MAP_TYPE_PROG_ARRAY); __uint(max_entries, 2); __uint(key_size, 4); __array(values, int (void *)); }} jt SEC(\".maps\") = {{ .values = {{ [1] = (void *)&tail }} }};
const volatile int cfg = 3; int cnt = 1; int z;
static __attribute__((noinline)) int sub(int x) {{ return x + cfg; }}
static long cb(__u32 i, void *c) {{ return 0; }}
SEC(\"xdp\") int tail(struct xdp_md *c) {{ return sub(c->ingress_ifindex); }}
SEC(\"xdp\") int main_prog(struct xdp_md *c) {{ __u32 k = 0; bpf_loop(2, cb, 0, 0); bpf_printk(\"x %d\", cnt); z++;
   if (bpf_map_lookup_elem(&h, &k)) return sub(1); bpf_tail_call(c, &jt, 1); return 2; }}
char l[] SEC(\"license\") = \"GPL\";
", common::PRELUDE);
        common::compile("fuzzseed", &src)
    })
    .as_ref()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Object::parse(&bytes);
    }

    #[test]
    fn random_bytes_with_elf_header(mut bytes in proptest::collection::vec(any::<u8>(), 64..4096)) {
        bytes[..7].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1]);
        bytes[16] = 1; bytes[17] = 0; bytes[18] = 247; bytes[19] = 0;
        let _ = Object::parse(&bytes);
    }

    #[test]
    fn corrupted_object(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
                        cut in any::<prop::sample::Index>(), truncate in any::<bool>()) {
        let Some(orig) = seed_object() else { return Ok(()) };
        let mut b = orig.clone();
        for (i, v) in &flips {
            let at = i.index(b.len());
            b[at] = *v;
        }
        if truncate {
            b.truncate(cut.index(b.len()));
        }
        let _ = Object::parse(&b);
    }
}

#[test]
fn seed_object_parses() {
    let Some(o) = seed_object() else { return };
    let obj = Object::parse(o).unwrap();
    assert_eq!(obj.programs.len(), 2);
    assert_eq!(
        obj.maps[obj.map_index("jt").unwrap()].slots,
        vec![(1, skiff_object::SlotInit::Prog("tail".into()))]
    );
}

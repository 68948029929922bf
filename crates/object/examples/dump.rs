//! Prints what skiff-object makes of an ELF file: `cargo run -p skiff-object --example dump -- x.o`.
fn main() {
    let path = std::env::args().nth(1).unwrap_or_default();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    match skiff_object::Object::parse(&bytes) {
        Ok(o) => {
            println!("license {:?}", o.license);
            for (i, m) in o.maps.iter().enumerate() {
                println!("map #{i} {m:?}");
            }
            for p in &o.programs {
                println!(
                    "prog {} sec {} {:?} {:?} frags={}",
                    p.name, p.section, p.prog_type, p.expected_attach_type, p.frags
                );
                for (i, x) in p.insns.iter().enumerate() {
                    println!(
                        "  {i:3}: code {:#04x} dst {} src {} off {} imm {}",
                        x.code, x.dst, x.src, x.off, x.imm
                    );
                }
            }
        }
        Err(e) => {
            println!("error: {e}");
            std::process::exit(2);
        }
    }
}

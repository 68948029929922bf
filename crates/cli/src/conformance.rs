//! `skiff conformance-plugin`: the bpf_conformance runner's plugin protocol.

use std::io::Read;

fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(&clean).map_err(|e| format!("bad hex: {e}"))
}

pub fn main(memory: Option<&str>) -> i32 {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("skiff conformance-plugin: reading stdin: {e}");
        return 1;
    }
    let result = (|| {
        let code = parse_hex(&input)?;
        let insns = skiff_isa::decode(&code).map_err(|e| e.to_string())?;
        let mem = match memory {
            Some(m) => parse_hex(m)?,
            None => Vec::new(),
        };
        skiff_vm::conformance::run(insns, &mem)
    })();
    match result {
        Ok(r0) => {
            println!("{r0:x}");
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

//! The `.data` test format of the bpf_conformance suite (its
//! lib/src/bpf_test_parser.cc): sections introduced by `-- asm`, `-- raw`, `-- mem`,
//! `-- result`, `-- error`, and the ignored `-- c` and `-- no register offset`;
//! `#` starts a comment. Running a test is the VM's job; this module only reads it.

use crate::{assemble, decode, validate, Insn};

/// One conformance test file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConformanceTest {
    /// The `-- asm` section, line structure kept (comments included).
    pub asm: Option<String>,
    /// Line number in the file of the first line of `asm` (for error messages).
    pub asm_line: usize,
    /// The `-- raw` section as bytecode: either hex bytes (`07 00 01 00 ...`) or one
    /// `0x`-prefixed 64-bit little-endian word per instruction.
    pub raw: Option<Vec<u8>>,
    /// The `-- mem` section: the input memory (hex bytes).
    pub mem: Vec<u8>,
    /// The `-- result` section: the expected r0.
    pub result: Option<u64>,
    /// The `-- error` section (possibly empty text): the program must be rejected.
    pub error: Option<String>,
}

/// A `.data` file that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Section {
    None,
    Asm,
    Raw,
    Mem,
    Result,
    Error,
    Ignored,
}

/// Parses a `.data` file. Unknown `-- directives`, bad hex and duplicate sections are
/// errors; whether the file has a program at all is [`ConformanceTest::program`]'s
/// question.
pub fn parse_data_file(text: &str) -> Result<ConformanceTest, ParseError> {
    let mut t = ConformanceTest::default();
    let mut section = Section::None;
    let mut seen: Vec<Section> = Vec::new();
    let mut asm = String::new();
    let mut raw_tokens: Vec<(usize, String)> = Vec::new();
    let mut result_lines: Vec<(usize, String)> = Vec::new();
    let mut error_lines: Vec<String> = Vec::new();

    for (n, line) in text.lines().enumerate() {
        let lineno = n + 1;
        let e = |message: String| ParseError {
            line: lineno,
            message,
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        let uncommented = line.split('#').next().unwrap_or("").trim();
        if let Some(directive) = uncommented.strip_prefix("--") {
            let next = match directive.trim() {
                "asm" => Section::Asm,
                "raw" => Section::Raw,
                "mem" => Section::Mem,
                "result" => Section::Result,
                "error" => Section::Error,
                "c" | "no register offset" => Section::Ignored,
                other => return Err(e(format!("unknown directive `-- {other}`"))),
            };
            if next != Section::Ignored && seen.contains(&next) {
                return Err(e(format!("duplicate section `-- {}`", directive.trim())));
            }
            seen.push(next);
            section = next;
            match next {
                Section::Asm => t.asm_line = lineno + 1,
                Section::Error => t.error = Some(String::new()),
                _ => {}
            }
            continue;
        }
        match section {
            Section::Asm => {
                asm.push_str(line);
                asm.push('\n');
            }
            Section::Raw => raw_tokens.extend(
                uncommented
                    .split_whitespace()
                    .map(|tok| (lineno, tok.to_string())),
            ),
            Section::Mem => {
                for tok in uncommented.split_whitespace() {
                    let digits = tok.strip_prefix("0x").unwrap_or(tok);
                    let b = (digits.len() <= 2)
                        .then(|| u8::from_str_radix(digits, 16).ok())
                        .flatten()
                        .ok_or_else(|| e(format!("invalid byte `{tok}` in -- mem")))?;
                    t.mem.push(b);
                }
            }
            Section::Result => {
                if !uncommented.is_empty() {
                    result_lines.push((lineno, uncommented.to_string()));
                }
            }
            Section::Error => {
                if !uncommented.is_empty() {
                    error_lines.push(uncommented.to_string());
                }
            }
            Section::None | Section::Ignored => {}
        }
    }

    if seen.contains(&Section::Asm) {
        t.asm = Some(asm);
    }
    if seen.contains(&Section::Raw) {
        t.raw = Some(parse_raw(&raw_tokens)?);
    }
    if let Some(err) = t.error.as_mut() {
        *err = error_lines.join("\n");
    }
    match result_lines.as_slice() {
        [] => {}
        [(line, value)] => {
            let parsed = match value
                .strip_prefix("0x")
                .or_else(|| value.strip_prefix("0X"))
            {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => value.parse::<u64>(),
            };
            t.result = Some(parsed.map_err(|_| ParseError {
                line: *line,
                message: format!("invalid result `{value}` (a u64, decimal or 0x hex)"),
            })?);
        }
        [_, (line, _), ..] => {
            return Err(ParseError {
                line: *line,
                message: "more than one value in -- result".into(),
            })
        }
    }
    Ok(t)
}

/// Raw bytecode: hex bytes, or `0x`-prefixed little-endian 64-bit words.
fn parse_raw(tokens: &[(usize, String)]) -> Result<Vec<u8>, ParseError> {
    let words = tokens
        .first()
        .map(|(_, t)| t.starts_with("0x") && t.len() > 4)
        .unwrap_or(false);
    let mut out = Vec::new();
    for (line, tok) in tokens {
        let e = |what: &str| ParseError {
            line: *line,
            message: format!("invalid {what} `{tok}` in -- raw"),
        };
        if words {
            let hex = tok.strip_prefix("0x").ok_or_else(|| e("64-bit word"))?;
            let v = u64::from_str_radix(hex, 16).map_err(|_| e("64-bit word"))?;
            out.extend_from_slice(&v.to_le_bytes());
        } else {
            let b = (tok.len() <= 2)
                .then(|| u8::from_str_radix(tok, 16).ok())
                .flatten()
                .ok_or_else(|| e("byte"))?;
            out.push(b);
        }
    }
    Ok(out)
}

impl ConformanceTest {
    /// The test's program: `-- raw` decoded if present (as bpf_conformance does), else
    /// `-- asm` assembled; then validated.
    pub fn program(&self) -> Result<Vec<Insn>, String> {
        let insns = if let Some(raw) = &self.raw {
            decode(raw).map_err(|e| format!("-- raw: {e}"))?
        } else if let Some(asm) = &self.asm {
            assemble(asm).map_err(|e| {
                format!(
                    "-- asm: line {} of the file: {}",
                    e.line + self.asm_line.saturating_sub(1),
                    e.message
                )
            })?
        } else {
            return Err("no program: the file has no -- asm or -- raw section".into());
        };
        validate(&insns).map_err(|e| format!("invalid program: {e}"))?;
        Ok(insns)
    }
}

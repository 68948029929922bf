//! JUnit XML for CI dashboards: one <testsuite> per fixture file, one
//! <testcase> per case, a <failure> with the diff lines, an <error> when the
//! case could not run.

use std::fmt::Write as _;

/// How one case ended.
pub enum CaseEnd {
    Pass,
    Fail(Vec<String>),
    Error(String),
}

pub struct SuiteReport {
    pub file: String,
    pub cases: Vec<(String, CaseEnd, f64)>,
}

/// XML 1.0 text: the five entities escaped, control characters XML cannot
/// hold dropped.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\t' | '\n' | '\r' => o.push(c),
            c if (c as u32) < 0x20 => {}
            c => o.push(c),
        }
    }
    o
}

pub fn render(suites: &[SuiteReport]) -> String {
    let count = |f: fn(&CaseEnd) -> bool| -> usize {
        suites
            .iter()
            .map(|s| s.cases.iter().filter(|(_, e, _)| f(e)).count())
            .sum()
    };
    let tests: usize = suites.iter().map(|s| s.cases.len()).sum();
    let failures = count(|e| matches!(e, CaseEnd::Fail(_)));
    let errors = count(|e| matches!(e, CaseEnd::Error(_)));
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"skiff test\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\">"
    );
    for s in suites {
        let f = s
            .cases
            .iter()
            .filter(|(_, e, _)| matches!(e, CaseEnd::Fail(_)))
            .count();
        let e = s
            .cases
            .iter()
            .filter(|(_, e, _)| matches!(e, CaseEnd::Error(_)))
            .count();
        let time: f64 = s.cases.iter().map(|c| c.2).sum();
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\" errors=\"{e}\" time=\"{time:.6}\">",
            esc(&s.file),
            s.cases.len()
        );
        for (name, end, t) in &s.cases {
            let open = format!(
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{t:.6}\"",
                esc(name),
                esc(&s.file)
            );
            match end {
                CaseEnd::Pass => {
                    let _ = writeln!(x, "{open}/>");
                }
                CaseEnd::Fail(lines) => {
                    let first = lines.first().map(String::as_str).unwrap_or("failed");
                    let _ = writeln!(
                        x,
                        "{open}>\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                        esc(first),
                        esc(&lines.join("\n"))
                    );
                }
                CaseEnd::Error(m) => {
                    let _ = writeln!(
                        x,
                        "{open}>\n      <error message=\"{}\">{}</error>\n    </testcase>",
                        esc(m),
                        esc(m)
                    );
                }
            }
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

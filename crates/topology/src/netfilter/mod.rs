//! `iptables = ["-t nat -A PREROUTING ...", ...]` and `ip6tables = [...]`
//! of a namespace: each line parsed as iptables parses it (rule.rs for the
//! rule part), then applied to the namespace's netfilter in order as
//! `ip netns exec NS iptables ...` would (the table made on first use, user
//! chains made by -N before a rule jumps to them).

pub mod restore;
mod rule;
mod words;

use skiff_net::netfilter::x_tables::{table_template, Policy, XtChain, XtCounters, XtRule};
use skiff_net::netfilter::{Netfilter, NfProto, TableId};

pub use rule::{RuleSpec, TargetSpec};
pub use words::ShellWords;

/// An error at a word of the line (None: the line as a whole).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NfLineError {
    pub word: Option<usize>,
    pub msg: String,
}

impl NfLineError {
    pub fn at(word: usize, msg: impl Into<String>) -> NfLineError {
        NfLineError {
            word: Some(word),
            msg: msg.into(),
        }
    }
    pub fn line(msg: impl Into<String>) -> NfLineError {
        NfLineError {
            word: None,
            msg: msg.into(),
        }
    }
}

/// What a line does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IptOp {
    /// -A CHAIN rule
    Append { chain: String, rule: RuleSpec },
    /// -I CHAIN [N] rule (N from 1)
    Insert {
        chain: String,
        pos: usize,
        rule: RuleSpec,
    },
    /// -N CHAIN
    NewChain(String),
    /// -P CHAIN ACCEPT|DROP
    Policy { chain: String, policy: Policy },
    /// -F [CHAIN]
    Flush(Option<String>),
    /// iptables-restore's `*TABLE`: the table is replaced, so its rules are
    /// flushed and its user chains deleted (for_each_chain(flush_entries),
    /// for_each_chain(delete_chain)); policies stay until `:CHAIN` sets them.
    Restore,
}

/// One iptables/ip6tables line, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IptCommand {
    pub family: NfProto,
    pub table: String,
    pub op: IptOp,
}

/// The chain name argument of a command option.
fn chain_arg(w: &mut ShellWords, opt: usize, name: &str) -> Result<String, NfLineError> {
    match w.next_word() {
        Some((_, c)) if !c.starts_with('-') => Ok(c.to_string()),
        _ => Err(NfLineError::at(
            opt,
            format!("option \"{name}\" requires an argument"),
        )),
    }
}

/// Parses one line (without the leading `iptables`).
pub fn parse_line(line: &str, family: NfProto) -> Result<IptCommand, NfLineError> {
    parse_line_in(line, family, None)
}

/// [`parse_line`]; `restore_table`: a line of iptables-restore input inside
/// `*TABLE`, where the table is given and `-t` is refused (iptables-restore's
/// "The -t option cannot be used in iptables-restore").
pub(crate) fn parse_line_in(
    line: &str,
    family: NfProto,
    restore_table: Option<&str>,
) -> Result<IptCommand, NfLineError> {
    let mut w =
        ShellWords::new(line).map_err(|_| NfLineError::line("unterminated quote in the line"))?;
    let mut table = restore_table.unwrap_or("filter").to_string();
    let mut cmd: Option<(usize, &'static str, String, Option<usize>)> = None;
    let mut policy: Option<(usize, String)> = None;
    let mut rest = Vec::new();
    while let Some((i, word)) = w.next_word() {
        let word = word.to_string();
        let op: Option<&'static str> = match word.as_str() {
            "-t" | "--table" if restore_table.is_some() => {
                return Err(NfLineError::at(
                    i,
                    "The -t option cannot be used in iptables-restore",
                ))
            }
            "-t" | "--table" => {
                table = chain_arg(&mut w, i, "-t")?;
                None
            }
            "-A" | "--append" => Some("-A"),
            "-I" | "--insert" => Some("-I"),
            "-N" | "--new-chain" => Some("-N"),
            "-P" | "--policy" => Some("-P"),
            "-F" | "--flush" => Some("-F"),
            "-D" | "--delete" | "-R" | "--replace" | "-X" | "--delete-chain" | "-E"
            | "--rename-chain" | "-Z" | "--zero" | "-L" | "--list" | "-S" | "--list-rules" => {
                return Err(NfLineError::at(
                    i,
                    format!("not supported: the {word} command (a topology adds rules)"),
                ))
            }
            _ => {
                rest.push(i);
                None
            }
        };
        let Some(op) = op else { continue };
        if cmd.is_some() {
            return Err(NfLineError::at(
                i,
                "Cannot use more than one command option",
            ));
        }
        let chain = match (op, w.peek()) {
            ("-F", None) => String::new(),
            ("-F", Some(c)) if c.starts_with('-') => String::new(),
            _ => chain_arg(&mut w, i, op)?,
        };
        let mut num = None;
        if op == "-I" {
            if let Some(n) = w.peek().and_then(|p| p.parse::<usize>().ok()) {
                w.next_word();
                num = Some(n);
            }
        }
        if op == "-P" {
            let (pi, p) = w
                .next_word()
                .ok_or_else(|| NfLineError::at(i, "-P requires a chain and a policy"))?;
            policy = Some((pi, p.to_string()));
        }
        cmd = Some((i, op, chain, num));
    }
    let (ci, op, chain, num) =
        cmd.ok_or_else(|| NfLineError::line("no command specified (-A, -I, -N, -P or -F)"))?;
    let rule_words = || {
        let mut rw = w.clone();
        rw.words = rest
            .iter()
            .filter_map(|&i| w.words.get(i).cloned())
            .collect();
        rw.pos = 0;
        (rw, rest.clone())
    };
    let op = match op {
        "-A" | "-I" => {
            let (mut rw, idx) = rule_words();
            let rule = rule::parse_rule(&mut rw, family).map_err(|e| NfLineError {
                word: e.word.and_then(|k| idx.get(k).copied()),
                msg: e.msg,
            })?;
            if op == "-A" {
                IptOp::Append { chain, rule }
            } else {
                let pos = num.unwrap_or(1);
                if pos == 0 {
                    return Err(NfLineError::at(ci, "Invalid rule number `0'"));
                }
                IptOp::Insert { chain, pos, rule }
            }
        }
        _ if !rest.is_empty() => {
            let i = rest.first().copied().unwrap_or(ci);
            return Err(NfLineError::at(i, format!("Illegal option with {op}")));
        }
        "-N" => IptOp::NewChain(chain),
        "-F" => IptOp::Flush((!chain.is_empty()).then_some(chain)),
        _ => {
            let (pi, p) = policy.unwrap_or((ci, String::new()));
            let policy = match p.as_str() {
                "ACCEPT" => Policy::Accept,
                "DROP" => Policy::Drop,
                _ => return Err(NfLineError::at(pi, "Bad policy name (ACCEPT or DROP)")),
            };
            IptOp::Policy { chain, policy }
        }
    };
    Ok(IptCommand { family, table, op })
}

/// Applies a parsed line to a namespace's netfilter, as the kernel takes
/// the table iptables writes back (errors as iptables prints them).
pub fn apply(nf: &mut Netfilter, c: &IptCommand) -> Result<(), String> {
    let tpl = table_template(&c.table).ok_or_else(|| {
        format!(
            "can't initialize iptables table `{}': Table does not exist",
            c.table
        )
    })?;
    let TableId(t) = nf.table(c.family, tpl).map_err(|e| e.to_string())?;
    let needs_ct = match &c.op {
        IptOp::Append { rule, .. } | IptOp::Insert { rule, .. } => rule.needs_conntrack(),
        _ => false,
    };
    if needs_ct {
        nf.conntrack_enable(c.family).map_err(|e| e.to_string())?;
    }
    let table = nf
        .tables
        .get_mut(t)
        .ok_or_else(|| format!("table {} vanished", c.table))?;
    let chain_of = |name: &str| {
        table
            .chain_index(name)
            .ok_or_else(|| format!("`{name}': No chain/target/match by that name"))
    };
    match &c.op {
        IptOp::NewChain(n) => {
            if table.chain_index(n).is_some() {
                return Err(format!("Chain `{n}' already exists"));
            }
            table.chains.push(XtChain::new(n, None));
        }
        IptOp::Policy { chain, policy } => {
            let i = chain_of(chain)?;
            let ch = table.chains.get_mut(i).ok_or("no chain")?;
            if ch.policy.is_none() {
                return Err(format!("Bad built-in chain name `{chain}'"));
            }
            ch.policy = Some(*policy);
        }
        IptOp::Flush(None) => table.chains.iter_mut().for_each(|ch| ch.rules.clear()),
        IptOp::Restore => {
            // Built-in chains come first (XtTable::builtin), so deleting the
            // user chains keeps hook_chain's indexes.
            let builtins = table
                .chains
                .iter()
                .take_while(|ch| ch.policy.is_some())
                .count();
            table.chains.truncate(builtins);
            table.chains.iter_mut().for_each(|ch| ch.rules.clear());
        }
        IptOp::Flush(Some(chain)) => {
            let i = chain_of(chain)?;
            if let Some(ch) = table.chains.get_mut(i) {
                ch.rules.clear();
            }
        }
        IptOp::Append { chain, rule } | IptOp::Insert { chain, rule, .. } => {
            let ci = chain_of(chain)?;
            let target = rule.target.resolve(|n| {
                let i = chain_of(n)?;
                match table.chains.get(i) {
                    Some(ch) if ch.policy.is_some() => Err(format!(
                        "`{n}' is a built-in chain: only user chains can be jumped to"
                    )),
                    _ => Ok(i),
                }
            })?;
            let r = XtRule {
                ip: rule.ip,
                matches: rule.matches.clone(),
                target,
                counters: XtCounters::default(),
            };
            let rules = &mut table.chains.get_mut(ci).ok_or("no chain")?.rules;
            let pos = match &c.op {
                IptOp::Insert { pos, .. } => {
                    if *pos > rules.len() + 1 {
                        return Err("Index of insertion too big".into());
                    }
                    pos - 1
                }
                _ => rules.len(),
            };
            rules.insert(pos, r);
            if let Some(l) = table.find_loop().map(String::from) {
                if let Some(ch) = table.chains.get_mut(ci) {
                    ch.rules.remove(pos);
                }
                return Err(format!(
                    "chain `{l}' would jump to itself: Too many levels of symbolic links"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

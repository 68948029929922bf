//! `[[netns.NAME.rule]]`: `ip rule add`.

use toml::Spanned;

use super::{cidr, one_of, Names};
use crate::error::{At, Ctx, TopologyError};
use crate::model::{Rule, RuleAction};
use crate::parse::parse_table;
use crate::raw::RawRule;

/// One rule; `earlier` gives the default preference.
pub(super) fn rule(
    cx: &Ctx,
    names: &Names,
    ns_name: &str,
    at: &At,
    rs: &Spanned<RawRule>,
    earlier: &[Rule],
) -> Result<Rule, TopologyError> {
    let r = rs.get_ref();
    let action = action(cx, at, rs)?;
    let priority = match &r.priority {
        Some(p) => *p.get_ref(),
        None => default_pref(earlier),
    };
    let iif = names.check_opt_dev(cx, ns_name, &r.iif, &at.f("iif"))?;
    let oif = names.check_opt_dev(cx, ns_name, &r.oif, &at.f("oif"))?;
    let from = r
        .from
        .as_ref()
        .map(|c| cidr(cx, c, &at.f("from")))
        .transpose()?;
    let to =
        r.to.as_ref()
            .map(|c| cidr(cx, c, &at.f("to")))
            .transpose()?;
    let fwmark = match (&r.fwmark, &r.fwmask) {
        (Some(m), k) => Some((
            *m.get_ref(),
            k.as_ref().map(|k| *k.get_ref()).unwrap_or(u32::MAX),
        )),
        (None, Some(k)) => return Err(cx.err(k, &at.f("fwmask"), "fwmask without fwmark")),
        (None, None) => None,
    };
    Ok(Rule {
        priority,
        from,
        to,
        iif,
        oif,
        fwmark,
        action,
    })
}

fn action(cx: &Ctx, at: &At, rs: &Spanned<RawRule>) -> Result<RuleAction, TopologyError> {
    let r = rs.get_ref();
    let act = match &r.action {
        Some(a) => one_of(
            cx,
            a,
            &at.f("action"),
            &["table", "blackhole", "unreachable", "prohibit"],
        )?,
        None => "table",
    };
    Ok(match act {
        "table" => {
            let t = r.table.as_ref().ok_or_else(|| {
                cx.err(
                    rs,
                    &at.f("table"),
                    "a rule needs `table` (or action = blackhole, unreachable, prohibit)",
                )
            })?;
            RuleAction::Table(parse_table(t.get_ref()).map_err(|m| cx.err(t, &at.f("table"), m))?)
        }
        "blackhole" => RuleAction::Blackhole,
        "unreachable" => RuleAction::Unreachable,
        _ => RuleAction::Prohibit,
    })
}

/// net/core/fib_rules.c: fib_default_rule_pref: one below the first non-zero
/// preference (local 0, main 32766, default 32767).
pub(super) fn default_pref(earlier: &[Rule]) -> u32 {
    earlier
        .iter()
        .map(|r| r.priority)
        .chain([32766, 32767])
        .filter(|p| *p > 0)
        .min()
        .unwrap_or(32766)
        .saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_prio(priority: u32) -> Rule {
        Rule {
            priority,
            from: None,
            to: None,
            iif: None,
            oif: None,
            fwmark: None,
            action: RuleAction::Table(254),
        }
    }

    #[test]
    fn default_pref_is_one_below_the_lowest_nonzero() {
        assert_eq!(default_pref(&[]), 32765);
        assert_eq!(default_pref(&[with_prio(100)]), 99);
        // preference 0 (the local rule's) does not count
        assert_eq!(default_pref(&[with_prio(0), with_prio(5)]), 4);
        assert_eq!(default_pref(&[with_prio(1)]), 0);
    }
}

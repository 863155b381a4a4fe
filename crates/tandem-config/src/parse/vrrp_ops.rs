//! What a `[[vrrp]]` instance reacts to and tells beyond its peers: `[[vrrp_script]]` check
//! commands (for `track_scripts`), `notify` commands and the `quorum` of witnesses.

use super::health::exec_command;
use super::*;

const SCRIPT_KEYS: &[&str] = &[
    "name", "command", "interval", "timeout", "rise", "fall", "weight",
];
const NOTIFY_KEYS: &[&str] = &["master", "backup", "fault", "stop", "any", "timeout"];
const QUORUM_KEYS: &[&str] = &["witnesses", "need", "interval", "timeout", "rise", "fall"];

/// Every `[[vrrp_script]]` table, validated. Returned with their names' validity so that
/// `track_scripts` can tell "no such script" from "that script's name is broken".
pub(super) fn scripts(cx: &mut Cx, v: &Value) -> (Vec<VrrpScript>, bool) {
    let Ok(items) = array_of_tables(cx, "vrrp_script", v, "write each script as [[vrrp_script]]")
    else {
        return (Vec::new(), true);
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    let mut broken_name = false;
    for (i, item) in items.iter().enumerate() {
        let Ok(mut t) = table(cx, &format!("vrrp_script[{i}]"), item, "[[vrrp_script]]") else {
            continue;
        };
        let name = named(cx, &mut t, "vrrp_script", SCRIPT_KEYS, &mut seen);
        broken_name |= name.is_none();
        let command = t.req(cx, "command", exec_command);
        let interval = or(
            t.opt(cx, "interval", duration),
            VrrpScript::DEFAULT_INTERVAL,
        );
        let timeout = or(t.opt(cx, "timeout", duration), interval);
        let rise = or(t.opt(cx, "rise", |cx, p, v| u32_at_least(cx, p, v, 1)), 1);
        let fall = or(t.opt(cx, "fall", |cx, p, v| u32_at_least(cx, p, v, 1)), 1);
        let weight = t
            .opt(cx, "weight", super::vrrp::track_weight)
            .ok()
            .flatten();
        let (Some(name), Ok(command)) = (name, command) else {
            continue;
        };
        out.push(VrrpScript {
            name,
            command,
            interval,
            timeout,
            rise,
            fall,
            weight,
        });
    }
    (out, broken_name)
}

/// A `track_scripts` name: one of the `[[vrrp_script]]` tables. Any name passes when a
/// script's own name is broken (that error is already reported).
pub(super) fn tracked_script(
    cx: &mut Cx,
    path: &str,
    v: &Value,
    scripts: &[VrrpScript],
    broken_names: bool,
) -> R<String> {
    let s = string(cx, path, v)?;
    if broken_names || scripts.iter().any(|x| x.name == s) {
        return Ok(s.to_string());
    }
    let hint = match closest(s, scripts.iter().map(|x| x.name.as_str())) {
        Some(c) => format!("did you mean `{c}`?"),
        None if scripts.is_empty() => {
            "no [[vrrp_script]] is defined; define the check as [[vrrp_script]] with a name and a command".to_string()
        }
        None => format!(
            "defined scripts: {}",
            scripts
                .iter()
                .map(|x| x.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Err(cx.error(
        v.span().start,
        path,
        format!("no vrrp_script named `{s}`; {hint}"),
    ))
}

/// `notify = { master = [...], ... }`.
pub(super) fn notify(cx: &mut Cx, path: &str, v: &Value) -> R<Notify> {
    if !matches!(v.get_ref(), DeValue::Table(_)) {
        return Err(wrong_type(
            cx,
            path,
            v,
            "a table of commands per state, e.g. { master = [\"/usr/local/bin/notify\", \"master\"], backup = [...] }",
        ));
    }
    let mut t = table(cx, path, v, "the notify table")?;
    t.check_keys(cx, NOTIFY_KEYS);
    let mut command = |key: &str| t.opt(cx, key, exec_command).ok().flatten();
    let master = command("master");
    let backup = command("backup");
    let fault = command("fault");
    let stop = command("stop");
    let any = command("any");
    let timeout = or(t.opt(cx, "timeout", duration), Notify::DEFAULT_TIMEOUT);
    Ok(Notify {
        master,
        backup,
        fault,
        stop,
        any,
        timeout,
    })
}

/// `quorum = { witnesses = [...], need = N, ... }`; `v6` is the instance's family, which its
/// witnesses need not share (a witness is reached over whatever route the node has).
pub(super) fn quorum(cx: &mut Cx, path: &str, v: &Value) -> R<Quorum> {
    let mut t = table(cx, path, v, "the quorum table")?;
    t.check_keys(cx, QUORUM_KEYS);
    let witnesses = t.req(cx, "witnesses", witnesses);
    let need = t.opt(cx, "need", |cx, p, v| integer(cx, p, v, 1, 255));
    let interval = or(t.opt(cx, "interval", duration), Quorum::DEFAULT_INTERVAL);
    let timeout = or(t.opt(cx, "timeout", duration), Quorum::DEFAULT_TIMEOUT);
    let rise = or(
        t.opt(cx, "rise", |cx, p, v| u32_at_least(cx, p, v, 1)),
        Quorum::DEFAULT_RISE,
    );
    let fall = or(
        t.opt(cx, "fall", |cx, p, v| u32_at_least(cx, p, v, 1)),
        Quorum::DEFAULT_FALL,
    );
    let witnesses = witnesses?;
    let majority = witnesses.len() / 2 + 1;
    let need = match need {
        Ok(Some(n)) => {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if n > witnesses.len() {
                let at = t.get("need").map_or(t.at, |v| v.span().start);
                return Err(cx.error(
                    at,
                    &t.key_path("need"),
                    format!(
                        "need = {n} but only {} witness(es) are listed; the node could never hold master",
                        witnesses.len()
                    ),
                ));
            }
            n
        }
        Ok(None) => majority,
        Err(e) => return Err(e),
    };
    Ok(Quorum {
        witnesses,
        need,
        interval,
        timeout,
        fall,
        rise,
    })
}

/// `witnesses`: a non-empty array of `"203.0.113.1"` (ICMP) or `"203.0.113.1:443"` (TCP).
fn witnesses(cx: &mut Cx, path: &str, v: &Value) -> R<Vec<Witness>> {
    const FORM: &str = "an array of addresses, \"203.0.113.1\" to ping or \"203.0.113.1:443\" to connect to over TCP";
    let DeValue::Array(items) = v.get_ref() else {
        return Err(wrong_type(cx, path, v, FORM));
    };
    if items.is_empty() {
        return Err(cx.error(
            v.span().start,
            path,
            "no witnesses: list at least one address this node must reach to hold master, or remove `quorum`",
        ));
    }
    let mut out = Vec::new();
    let mut bad = false;
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Ok(s) = string(cx, &p, item) else {
            bad = true;
            continue;
        };
        let w = if let Ok(ip) = s.parse::<IpAddr>() {
            Witness::Icmp(ip)
        } else if let Ok(a) = s.parse::<SocketAddr>() {
            if a.port() == 0 {
                cx.error(item.span().start, &p, "port 0 cannot be connected to");
                bad = true;
                continue;
            }
            Witness::Tcp(a)
        } else {
            cx.error(
                item.span().start,
                &p,
                format!("invalid witness {s:?}: write an IP address to ping (\"203.0.113.1\") or an address with a port to connect to (\"203.0.113.1:443\", \"[2001:db8::1]:443\")"),
            );
            bad = true;
            continue;
        };
        if out.contains(&w) {
            cx.error(
                item.span().start,
                &p,
                format!("witness {s} is listed twice"),
            );
            bad = true;
            continue;
        }
        out.push(w);
    }
    if bad {
        return Err(Reported);
    }
    Ok(out)
}

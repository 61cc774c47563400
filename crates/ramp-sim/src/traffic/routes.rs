//! How each router's objects treat one request class: Istio HTTP route matches, weighted
//! destinations and mirrors, Gateway API rules and backends, NGINX canary annotations. Pure
//! reading of the objects' JSON; the split in `split.rs` applies the results to the load.

use k8s_openapi::api::networking::v1::Ingress;
use serde_json::Value;

use super::split::RequestClass;

const NGINX: &str = "nginx.ingress.kubernetes.io";

pub(super) fn header<'a>(class: &'a RequestClass, name: &str) -> Option<&'a str> {
    if name.eq_ignore_ascii_case("cookie") && !class.cookies.is_empty() {
        return None;
    }
    class
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub(super) fn cookie_header(class: &RequestClass) -> Option<String> {
    (!class.cookies.is_empty()).then(|| {
        class
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

pub(super) fn cookie<'a>(class: &'a RequestClass, name: &str) -> Option<&'a str> {
    class
        .cookies
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Istio's StringMatch (`exact`, `prefix`, `regex` — RE2, matching the whole value).
pub(super) fn string_match(matcher: &Value, value: Option<&str>) -> bool {
    let Some(value) = value else { return false };
    if let Some(exact) = matcher.get("exact").and_then(Value::as_str) {
        return value == exact;
    }
    if let Some(prefix) = matcher.get("prefix").and_then(Value::as_str) {
        return value.starts_with(prefix);
    }
    if let Some(pattern) = matcher.get("regex").and_then(Value::as_str) {
        return regex::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|re| re.is_match(value));
    }
    // An empty matcher matches any present value.
    true
}

/// Whether one of the route's `match` entries accepts a GET of `/` from `class`.
pub(super) fn istio_route_matches(route: &Value, class: &RequestClass) -> bool {
    let Some(matches) = route.get("match").and_then(Value::as_array) else {
        return true;
    };
    if matches.is_empty() {
        return true;
    }
    let cookies = cookie_header(class);
    let header_value = |name: &str| -> Option<String> {
        if name.eq_ignore_ascii_case("cookie") {
            return cookies.clone();
        }
        header(class, name).map(str::to_string)
    };
    matches.iter().any(|m| {
        let headers_ok = m
            .get("headers")
            .and_then(Value::as_object)
            .is_none_or(|hs| {
                hs.iter()
                    .all(|(name, matcher)| string_match(matcher, header_value(name).as_deref()))
            });
        let without_ok = m
            .get("withoutHeaders")
            .and_then(Value::as_object)
            .is_none_or(|hs| {
                hs.iter()
                    .all(|(name, matcher)| !string_match(matcher, header_value(name).as_deref()))
            });
        let uri_ok = m.get("uri").is_none_or(|u| string_match(u, Some("/")));
        let method_ok = m.get("method").is_none_or(|u| string_match(u, Some("GET")));
        let query_ok = m
            .get("queryParams")
            .and_then(Value::as_object)
            .is_none_or(serde_json::Map::is_empty);
        headers_ok && without_ok && uri_ok && method_ok && query_ok
    })
}

/// `(host, subset, weight)` of each destination of an HTTP route (weight defaults to 100 for
/// a single destination, as Istio requires weights only when there are several).
pub(super) fn route_destinations(
    route: &Value,
) -> impl Iterator<Item = (String, Option<String>, f64)> + '_ {
    let list = route.get("route").and_then(Value::as_array);
    let single = list.is_some_and(|l| l.len() == 1);
    list.into_iter().flatten().filter_map(move |d| {
        let destination = d.get("destination")?;
        let host = destination.get("host")?.as_str()?.to_string();
        let subset = destination
            .get("subset")
            .and_then(Value::as_str)
            .map(str::to_string);
        let weight = d
            .get("weight")
            .and_then(Value::as_f64)
            .unwrap_or(if single { 100.0 } else { 0.0 });
        Some((host, subset, weight.max(0.0)))
    })
}

/// `(host, subset, percent)` of a route's mirror (`mirrorPercentage.value`, legacy
/// `mirrorPercent`, default 100).
pub(super) fn mirror_destination(route: &Value) -> Option<(String, Option<String>, f64)> {
    let mirror = route.get("mirror")?;
    let host = mirror.get("host")?.as_str()?.to_string();
    let subset = mirror
        .get("subset")
        .and_then(Value::as_str)
        .map(str::to_string);
    let percent = route
        .pointer("/mirrorPercentage/value")
        .and_then(Value::as_f64)
        .or_else(|| route.get("mirrorPercent").and_then(Value::as_f64))
        .unwrap_or(100.0)
        .clamp(0.0, 100.0);
    Some((host, subset, percent))
}

/// `(namespace, service)` named by an Istio host: `svc`, `svc.ns`, `svc.ns.svc[.cluster.local]`.
pub fn resolve_host(host: &str, default_namespace: &str) -> (String, String) {
    let mut parts = host.split('.');
    let name = parts.next().unwrap_or_default().to_string();
    let namespace = parts
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or(default_namespace)
        .to_string();
    (namespace, name)
}

/// The first rule of an HTTPRoute that accepts a GET of `/` from `class` (rules with header
/// matches are more specific and win over rules without).
pub(super) fn gateway_rule_for<'a>(rules: &'a [Value], class: &RequestClass) -> Option<&'a Value> {
    let accepts = |m: &Value| {
        let headers_ok = m.get("headers").and_then(Value::as_array).is_none_or(|hs| {
            hs.iter().all(|h| {
                let name = h.get("name").and_then(Value::as_str).unwrap_or_default();
                let value = h.get("value").and_then(Value::as_str).unwrap_or_default();
                let actual = header(class, name);
                match h.get("type").and_then(Value::as_str).unwrap_or("Exact") {
                    "RegularExpression" => actual
                        .is_some_and(|a| regex::Regex::new(value).is_ok_and(|re| re.is_match(a))),
                    _ => actual == Some(value),
                }
            })
        });
        let path_ok = m.get("path").is_none_or(|p| {
            let value = p.get("value").and_then(Value::as_str).unwrap_or("/");
            match p
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("PathPrefix")
            {
                "Exact" => value == "/",
                "RegularExpression" => regex::Regex::new(value).is_ok_and(|re| re.is_match("/")),
                _ => value == "/" || value.is_empty(),
            }
        });
        headers_ok && path_ok
    };
    let rule_accepts = |rule: &Value| match rule.get("matches").and_then(Value::as_array) {
        None => true,
        Some(ms) if ms.is_empty() => true,
        Some(ms) => ms.iter().any(accepts),
    };
    let has_headers = |rule: &Value| {
        rule.get("matches")
            .and_then(Value::as_array)
            .is_some_and(|ms| ms.iter().any(|m| m.get("headers").is_some()))
    };
    rules
        .iter()
        .filter(|r| has_headers(r))
        .chain(rules.iter().filter(|r| !has_headers(r)))
        .find(|r| rule_accepts(r))
}

/// `(namespace, service, weight)` of a rule's Service backends (weight defaults to 1).
pub(super) fn gateway_backends(rule: &Value, namespace: &str) -> Vec<(String, String, f64)> {
    rule.get("backendRefs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|b| b.get("kind").and_then(Value::as_str).unwrap_or("Service") == "Service")
        .filter_map(|b| {
            let name = b.get("name")?.as_str()?.to_string();
            let ns = b
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or(namespace)
                .to_string();
            let weight = b
                .get("weight")
                .and_then(Value::as_f64)
                .unwrap_or(1.0)
                .max(0.0);
            Some((ns, name, weight))
        })
        .collect()
}

pub(super) fn nginx_annotation<'a>(ingress: &'a Ingress, key: &str) -> Option<&'a str> {
    ingress
        .metadata
        .annotations
        .as_ref()?
        .get(&format!("{NGINX}/{key}"))
        .map(String::as_str)
}

pub(super) fn is_canary_ingress(ingress: &Ingress) -> bool {
    nginx_annotation(ingress, "canary") == Some("true")
}

/// `(host, path, service, port)` of every backend of an Ingress.
pub(super) fn ingress_paths(ingress: &Ingress) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for rule in ingress.spec.iter().flat_map(|s| s.rules.iter().flatten()) {
        let host = rule.host.clone().unwrap_or_default();
        for path in rule.http.iter().flat_map(|h| h.paths.iter()) {
            let Some(service) = path.backend.service.as_ref() else {
                continue;
            };
            let port = service
                .port
                .as_ref()
                .and_then(|p| p.number.map(|n| n.to_string()).or_else(|| p.name.clone()))
                .unwrap_or_default();
            out.push((
                host.clone(),
                path.path.clone().unwrap_or_else(|| "/".into()),
                service.name.clone(),
                port,
            ));
        }
    }
    out
}

/// The share of `class`'s requests a canary Ingress takes: header, then cookie, then weight.
pub(super) fn nginx_canary_fraction(canary: &Ingress, class: &RequestClass) -> f64 {
    if let Some(value) =
        nginx_annotation(canary, "canary-by-header").and_then(|name| header(class, name))
    {
        {
            if let Some(wanted) = nginx_annotation(canary, "canary-by-header-value") {
                if value == wanted {
                    return 1.0;
                }
            } else if let Some(pattern) = nginx_annotation(canary, "canary-by-header-pattern") {
                if regex::Regex::new(pattern).is_ok_and(|re| re.is_match(value)) {
                    return 1.0;
                }
            } else if value == "always" {
                return 1.0;
            } else if value == "never" {
                return 0.0;
            }
        }
    }
    if let Some(name) = nginx_annotation(canary, "canary-by-cookie") {
        match cookie(class, name) {
            Some("always") => return 1.0,
            Some("never") => return 0.0,
            _ => {}
        }
    }
    let weight: f64 = nginx_annotation(canary, "canary-weight")
        .and_then(|w| w.trim().parse().ok())
        .unwrap_or(0.0);
    let total: f64 = nginx_annotation(canary, "canary-weight-total")
        .and_then(|w| w.trim().parse().ok())
        .filter(|t: &f64| *t > 0.0)
        .unwrap_or(100.0);
    (weight / total).clamp(0.0, 1.0)
}

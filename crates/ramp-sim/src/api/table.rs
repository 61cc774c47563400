//! `Table` responses (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`) for `kubectl
//! get`: a CRD's additionalPrinterColumns evaluated with a JSONPath subset, and the usual
//! columns for the built-in kinds.

use super::catalog::PrinterColumn;
use super::server::{ApiRequest, Target, partial_metadata};
use serde_json::{Value, json};

fn column(
    name: &str,
    type_: &str,
    format: &str,
    description: &str,
    priority: i64,
) -> PrinterColumn {
    PrinterColumn {
        name: name.to_owned(),
        type_: type_.to_owned(),
        format: format.to_owned(),
        description: description.to_owned(),
        json_path: String::new(),
        priority,
    }
}

/// Computes one cell of a column from an object.
type Cell = Box<dyn Fn(&Value) -> Value>;

/// Columns and how to compute each cell.
fn columns(target: &Target) -> Vec<(PrinterColumn, Cell)> {
    let name_column = column(
        "Name",
        "string",
        "name",
        "Name must be unique within a namespace.",
        0,
    );
    let name_cell: Box<dyn Fn(&Value) -> Value> =
        Box::new(|o: &Value| o.pointer("/metadata/name").cloned().unwrap_or(Value::Null));
    let age = || -> (PrinterColumn, Cell) {
        (
            column(
                "Age",
                "string",
                "",
                "CreationTimestamp is a timestamp representing the server time when this object was created.",
                0,
            ),
            Box::new(|o: &Value| Value::String(age_of(o.pointer("/metadata/creationTimestamp")))),
        )
    };
    let mut out: Vec<(PrinterColumn, Cell)> = vec![(name_column, name_cell)];
    if target.def.is_custom() {
        let printer = target
            .def
            .version(&target.version)
            .map(|v| v.printer_columns.clone())
            .unwrap_or_default();
        if printer.is_empty() {
            out.push(age());
        }
        for col in printer {
            let path = col.json_path.clone();
            let type_ = col.type_.clone();
            out.push((
                col,
                Box::new(move |o: &Value| {
                    let values = jsonpath(o, &path);
                    cell_value(&type_, &values)
                }),
            ));
        }
        return out;
    }
    let ptr = |p: &'static str| -> Box<dyn Fn(&Value) -> Value> {
        Box::new(move |o: &Value| o.pointer(p).cloned().unwrap_or(json!(0)))
    };
    match (target.def.group.as_str(), target.def.plural.as_str()) {
        ("", "namespaces") => {
            out.push((
                column("Status", "string", "", "The status of the namespace", 0),
                Box::new(|o: &Value| {
                    o.pointer("/status/phase")
                        .cloned()
                        .unwrap_or(Value::String(String::new()))
                }),
            ));
            out.push(age());
        }
        ("", "pods") => {
            out.push((
                column(
                    "Ready",
                    "string",
                    "",
                    "The aggregate readiness state of this pod for accepting traffic.",
                    0,
                ),
                Box::new(|o: &Value| {
                    let total = o
                        .pointer("/spec/containers")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len);
                    let ready = o
                        .pointer("/status/containerStatuses")
                        .and_then(Value::as_array)
                        .map_or(0, |s| {
                            s.iter()
                                .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
                                .count()
                        });
                    Value::String(format!("{ready}/{total}"))
                }),
            ));
            out.push((
                column(
                    "Status",
                    "string",
                    "",
                    "The aggregate status of the containers in this pod.",
                    0,
                ),
                Box::new(|o: &Value| {
                    let waiting = o
                        .pointer("/status/containerStatuses")
                        .and_then(Value::as_array)
                        .and_then(|s| {
                            s.iter()
                                .find_map(|c| c.pointer("/state/waiting/reason").cloned())
                        });
                    let terminating = o
                        .pointer("/metadata/deletionTimestamp")
                        .map(|_| Value::String("Terminating".into()));
                    terminating
                        .or(waiting)
                        .or_else(|| o.pointer("/status/phase").cloned())
                        .unwrap_or(Value::String(String::new()))
                }),
            ));
            out.push((
                column(
                    "Restarts",
                    "string",
                    "",
                    "The number of times the containers in this pod have been restarted.",
                    0,
                ),
                Box::new(|o: &Value| {
                    let restarts: i64 = o
                        .pointer("/status/containerStatuses")
                        .and_then(Value::as_array)
                        .map_or(0, |s| {
                            s.iter()
                                .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
                                .sum()
                        });
                    Value::String(restarts.to_string())
                }),
            ));
            out.push(age());
            out.push((
                column("IP", "string", "", "IP address allocated to the pod.", 1),
                Box::new(|o: &Value| {
                    o.pointer("/status/podIP")
                        .cloned()
                        .unwrap_or(Value::String("<none>".into()))
                }),
            ));
            out.push((
                column(
                    "Node",
                    "string",
                    "",
                    "Name of the node the pod is assigned to.",
                    1,
                ),
                Box::new(|o: &Value| {
                    o.pointer("/spec/nodeName")
                        .cloned()
                        .unwrap_or(Value::String("<none>".into()))
                }),
            ));
        }
        ("apps", "replicasets") => {
            out.push((
                column("Desired", "integer", "", "Number of desired pods.", 0),
                ptr("/spec/replicas"),
            ));
            out.push((
                column("Current", "integer", "", "Number of actual replicas.", 0),
                ptr("/status/replicas"),
            ));
            out.push((
                column("Ready", "integer", "", "Number of ready replicas.", 0),
                ptr("/status/readyReplicas"),
            ));
            out.push(age());
        }
        ("apps", "deployments") => {
            out.push((
                column(
                    "Ready",
                    "string",
                    "",
                    "Number of the pod with ready state.",
                    0,
                ),
                Box::new(|o: &Value| {
                    let ready = o
                        .pointer("/status/readyReplicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    let desired = o
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    Value::String(format!("{ready}/{desired}"))
                }),
            ));
            out.push((column("Up-to-date", "integer", "", "Total number of non-terminated pods targeted by this deployment that have the desired template spec.", 0), ptr("/status/updatedReplicas")));
            out.push((column("Available", "integer", "", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.", 0), ptr("/status/availableReplicas")));
            out.push(age());
        }
        ("", "services") => {
            out.push((
                column("Type", "string", "", "The type of the service.", 0),
                Box::new(|o: &Value| {
                    o.pointer("/spec/type")
                        .cloned()
                        .unwrap_or(Value::String("ClusterIP".into()))
                }),
            ));
            out.push((
                column(
                    "Cluster-IP",
                    "string",
                    "",
                    "The IP address of the service.",
                    0,
                ),
                Box::new(|o: &Value| {
                    o.pointer("/spec/clusterIP")
                        .cloned()
                        .unwrap_or(Value::String("<none>".into()))
                }),
            ));
            out.push(age());
        }
        ("", "configmaps") => {
            out.push((
                column("Data", "integer", "", "Number of data entries.", 0),
                Box::new(|o: &Value| {
                    let n = o
                        .get("data")
                        .and_then(Value::as_object)
                        .map_or(0, |m| m.len())
                        + o.get("binaryData")
                            .and_then(Value::as_object)
                            .map_or(0, |m| m.len());
                    json!(n)
                }),
            ));
            out.push(age());
        }
        _ => out.push(age()),
    }
    out
}

/// Renders a Table for the objects, honouring `includeObject` (None, Metadata, Object).
pub fn table(target: &Target, objects: &[Value], rv: u64, request: &ApiRequest) -> Value {
    let columns = columns(target);
    let include = request.param("includeObject").unwrap_or("Metadata");
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let cells: Vec<Value> = columns.iter().map(|(_, cell)| cell(object)).collect();
            let mut row = json!({"cells": cells});
            match include {
                "None" => {}
                "Object" => row["object"] = object.clone(),
                _ => row["object"] = partial_metadata(object),
            }
            row
        })
        .collect();
    let definitions: Vec<Value> = columns
        .iter()
        .map(|(c, _)| {
            json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

fn cell_value(type_: &str, values: &[Value]) -> Value {
    match values {
        [] => Value::Null,
        [single] => match (type_, single) {
            ("date", v) => Value::String(age_of(Some(v))),
            ("integer", Value::Number(_))
            | ("number", Value::Number(_))
            | ("boolean", Value::Bool(_)) => single.clone(),
            (_, Value::String(s)) => Value::String(s.clone()),
            (_, other) => Value::String(other.to_string()),
        },
        many => Value::String(
            many.iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
        ),
    }
}

/// Age as kubectl shows it (`5s`, `3m2s`, `4h`, `2d3h`), from an RFC 3339 timestamp.
fn age_of(timestamp: Option<&Value>) -> String {
    let Some(ts) = timestamp.and_then(Value::as_str) else {
        return "<unknown>".to_owned();
    };
    let Ok(then) = ts.parse::<k8s_openapi::jiff::Timestamp>() else {
        return "<unknown>".to_owned();
    };
    let secs = k8s_openapi::jiff::Timestamp::now().as_second() - then.as_second();
    human_duration(secs)
}

fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".to_owned();
    }
    let secs = secs.max(0);
    let (minutes, hours, days) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if minutes < 10 {
        if secs % 60 == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{}s", secs % 60)
        }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        if minutes % 60 == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{}m", minutes % 60)
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 192 {
        if hours % 24 == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{}h", hours % 24)
        }
    } else if days < 730 {
        format!("{days}d")
    } else {
        let years = days / 365;
        if days % 365 == 0 || years >= 8 {
            format!("{years}y")
        } else {
            format!("{years}y{}d", days % 365)
        }
    }
}

/// The JSONPath subset printer columns use: `.a.b`, `.a[0]`, `.a[*].b`, `.a['x.y']` and
/// `.a[?(@.type=="Ready")].status`.
pub fn jsonpath(root: &Value, path: &str) -> Vec<Value> {
    let path = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    let mut current: Vec<&Value> = vec![root];
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let key = &after[..end];
            rest = &after[end..];
            if key.is_empty() {
                continue;
            }
            current = current.into_iter().filter_map(|v| v.get(key)).collect();
        } else if let Some(after) = rest.strip_prefix('[') {
            let Some(close) = find_closing(after) else {
                return Vec::new();
            };
            let inner = &after[..close];
            rest = &after[close + 1..];
            current = apply_bracket(current, inner);
        } else {
            return Vec::new();
        }
    }
    current.into_iter().cloned().collect()
}

fn find_closing(s: &str) -> Option<usize> {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '[' | '(' => depth += 1,
            ')' => depth -= 1,
            ']' if depth == 0 => return Some(i),
            ']' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn apply_bracket<'a>(current: Vec<&'a Value>, inner: &str) -> Vec<&'a Value> {
    let inner = inner.trim();
    if inner == "*" {
        return current
            .into_iter()
            .flat_map(|v| match v {
                Value::Array(a) => a.iter().collect::<Vec<_>>(),
                Value::Object(m) => m.values().collect(),
                _ => Vec::new(),
            })
            .collect();
    }
    if let Some(quoted) = inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return current.into_iter().filter_map(|v| v.get(quoted)).collect();
    }
    if let Ok(index) = inner.parse::<i64>() {
        return current
            .into_iter()
            .filter_map(|v| {
                let a = v.as_array()?;
                let i = if index < 0 {
                    a.len() as i64 + index
                } else {
                    index
                };
                a.get(usize::try_from(i).ok()?)
            })
            .collect();
    }
    if let Some(filter) = inner.strip_prefix("?(").and_then(|s| s.strip_suffix(')')) {
        let (lhs, rhs, negate) = if let Some((l, r)) = filter.split_once("==") {
            (l, r, false)
        } else if let Some((l, r)) = filter.split_once("!=") {
            (l, r, true)
        } else {
            return Vec::new();
        };
        let field = lhs.trim().trim_start_matches('@');
        let expected = rhs.trim().trim_matches('"').trim_matches('\'');
        return current
            .into_iter()
            .flat_map(|v| {
                v.as_array()
                    .map(|a| a.iter().collect::<Vec<_>>())
                    .unwrap_or_default()
            })
            .filter(|item| {
                let actual = jsonpath(item, field);
                let equal = actual.first().is_some_and(|a| match a {
                    Value::String(s) => s == expected,
                    other => serde_json::from_str::<Value>(expected).is_ok_and(|e| &e == other),
                });
                equal != negate
            })
            .collect();
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_reads_fields_indexes_and_filters() {
        let obj = json!({"spec": {"replicas": 3}, "status": {"conditions": [
            {"type": "Available", "status": "True"}, {"type": "Progressing", "status": "False"}
        ]}});
        assert_eq!(jsonpath(&obj, ".spec.replicas"), vec![json!(3)]);
        assert_eq!(
            jsonpath(&obj, ".status.conditions[1].type"),
            vec![json!("Progressing")]
        );
        assert_eq!(
            jsonpath(
                &obj,
                ".status.conditions[?(@.type==\"Progressing\")].status"
            ),
            vec![json!("False")]
        );
        assert_eq!(jsonpath(&obj, ".status.conditions[*].type").len(), 2);
        assert!(jsonpath(&obj, ".status.missing").is_empty());
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(185), "3m5s");
        assert_eq!(human_duration(3600 * 5), "5h");
        assert_eq!(human_duration(86400 * 3 + 3600), "3d1h");
    }
}

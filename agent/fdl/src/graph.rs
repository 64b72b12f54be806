//! The workflow graph: which service's outputs land where another service is triggered.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::Serialize;

use super::workflow::{IoBinding, Platform, ProviderKind, Service, Workflow};

/// How sure an edge is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Certainty {
    /// Every output lands inside the consumer's input folder.
    Always,
    /// The consumer watches a sub-folder of the output path: only outputs written there feed it.
    Maybe,
}

#[derive(Debug, Clone, Serialize)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub via: IoBinding,
    pub certainty: Certainty,
}

/// An input that nothing in the file feeds, or an output that feeds nothing.
#[derive(Debug, Clone, Serialize)]
pub struct Port {
    pub service: usize,
    pub binding: IoBinding,
}

#[derive(Debug, Serialize)]
pub struct Graph {
    pub services: Vec<String>,
    pub edges: Vec<Edge>,
    pub entry_points: Vec<Port>,
    pub results: Vec<Port>,
    /// Each cycle as the services in it (a service that feeds itself is a cycle of one).
    pub cycles: Vec<Vec<usize>>,
}

/// Which physical store a binding's provider denotes, so that two provider ids for the same store
/// (AWS S3 seen from OSCAR as `s3.my_s3` and from Lambda as `s3`) are linked.
fn store_identity(wf: &Workflow, svc: &Service, b: &IoBinding) -> String {
    let p = &b.provider;
    let declared = wf.providers.iter().find(|d| &d.reference == p);
    if let Some(ep) = declared.and_then(|d| d.settings.endpoint()) {
        let ep = ep.trim().trim_end_matches('/');
        let ep = ep.split_once("://").map_or(ep, |(_, rest)| rest);
        return format!("{}@{}", p.kind.as_str(), ep.to_ascii_lowercase());
    }
    match p.kind {
        // An OSCAR cluster's own MinIO; OSCAR names a peer's MinIO after the peer's cluster id.
        ProviderKind::Minio if p.id == "default" => match &svc.platform {
            Platform::Oscar { cluster_id } => format!("minio@cluster:{cluster_id}"),
            _ => p.to_string(),
        },
        ProviderKind::Minio if wf.clusters.contains(&p.id) => format!("minio@cluster:{}", p.id),
        // Bucket names are global in AWS S3.
        ProviderKind::S3 => "s3@aws".to_string(),
        _ => p.to_string(),
    }
}

fn under(path: &str, folder: &str) -> bool {
    path == folder || path.strip_prefix(folder).is_some_and(|r| r.starts_with('/'))
}

/// The service's name, with its cluster where two clusters of one file use the same name
/// (OSCAR's replicas are written so).
fn display_name(all: &[Service], s: &Service) -> String {
    let clash = all.iter().filter(|o| o.name == s.name).count() > 1;
    match &s.platform {
        Platform::Oscar { cluster_id } if clash => format!("{}@{cluster_id}", s.name),
        _ => s.name.clone(),
    }
}

pub fn build(wf: &Workflow) -> Graph {
    let svcs = &wf.services;
    let mut edges = Vec::new();
    let mut fed_inputs: BTreeSet<(usize, usize)> = BTreeSet::new();
    let mut used_outputs: BTreeSet<(usize, usize)> = BTreeSet::new();
    for (a, sa) in svcs.iter().enumerate() {
        for (oi, out) in sa.outputs.iter().enumerate() {
            let so = store_identity(wf, sa, out);
            for (b, sb) in svcs.iter().enumerate() {
                for (ii, inp) in sb.inputs.iter().enumerate() {
                    if store_identity(wf, sb, inp) != so {
                        continue;
                    }
                    let certainty = if under(&out.path, &inp.path) {
                        Certainty::Always
                    } else if under(&inp.path, &out.path) {
                        Certainty::Maybe
                    } else {
                        continue;
                    };
                    fed_inputs.insert((b, ii));
                    used_outputs.insert((a, oi));
                    edges.push(Edge {
                        from: a,
                        to: b,
                        via: out.clone(),
                        certainty,
                    });
                }
            }
        }
    }
    let ports = |pick: fn(&Service) -> &Vec<IoBinding>, used: &BTreeSet<(usize, usize)>| {
        svcs.iter()
            .enumerate()
            .flat_map(|(s, svc)| pick(svc).iter().enumerate().map(move |(i, b)| (s, i, b)))
            .filter(|(s, i, _)| !used.contains(&(*s, *i)))
            .map(|(s, _, b)| Port {
                service: s,
                binding: b.clone(),
            })
            .collect::<Vec<_>>()
    };
    let entry_points = ports(|s| &s.inputs, &fed_inputs);
    let results = ports(|s| &s.outputs, &used_outputs);
    let cycles = cycles(svcs.len(), &edges);
    Graph {
        services: svcs.iter().map(|s| display_name(svcs, s)).collect(),
        edges,
        entry_points,
        results,
        cycles,
    }
}

/// Strongly connected components (Tarjan) of more than one service, plus self-loops.
fn cycles(n: usize, edges: &[Edge]) -> Vec<Vec<usize>> {
    let mut adj = vec![Vec::new(); n];
    for e in edges {
        adj[e.from].push(e.to);
    }
    struct T<'a> {
        adj: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    impl T<'_> {
        // Recursion depth is bounded by the number of services in one file (small).
        fn visit(&mut self, v: usize) {
            self.index[v] = Some(self.next);
            self.low[v] = self.next;
            self.next += 1;
            self.stack.push(v);
            self.on[v] = true;
            for &w in &self.adj[v] {
                match self.index[w] {
                    None => {
                        self.visit(w);
                        self.low[v] = self.low[v].min(self.low[w]);
                    }
                    Some(iw) if self.on[w] => self.low[v] = self.low[v].min(iw),
                    _ => {}
                }
            }
            if Some(self.low[v]) == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on[w] = false;
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 || self.adj[v].contains(&v) {
                    comp.sort_unstable();
                    self.out.push(comp);
                }
            }
        }
    }
    let mut t = T {
        adj: &adj,
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            t.visit(v);
        }
    }
    t.out.sort();
    t.out
}

impl Graph {
    fn cycle_names(&self, c: &[usize]) -> String {
        let mut names: Vec<&str> = c.iter().map(|&i| self.services[i].as_str()).collect();
        names.push(names[0]);
        names.join(" -> ")
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "services: {}", self.services.join(", "));
        let _ = writeln!(s, "links:");
        if self.edges.is_empty() {
            let _ = writeln!(s, "  (none)");
        }
        for e in &self.edges {
            let maybe = if e.certainty == Certainty::Maybe {
                " (only outputs written to its sub-folder)"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "  {} -> {}  via {}{maybe}",
                self.services[e.from], self.services[e.to], e.via
            );
        }
        let _ = writeln!(s, "entry points (inputs nothing in the file feeds):");
        for p in &self.entry_points {
            let _ = writeln!(s, "  {} -> {}", p.binding, self.services[p.service]);
        }
        let _ = writeln!(s, "results (outputs that feed nothing):");
        for p in &self.results {
            let _ = writeln!(s, "  {} -> {}", self.services[p.service], p.binding);
        }
        if self.cycles.is_empty() {
            let _ = writeln!(s, "cycles: none");
        } else {
            let _ = writeln!(s, "cycles (each output re-triggers the chain forever):");
            for c in &self.cycles {
                let _ = writeln!(s, "  {}", self.cycle_names(c));
            }
        }
        s
    }

    pub fn to_mermaid(&self) -> String {
        let q = |t: &str| t.replace('"', "#quot;");
        let mut s = String::from("flowchart LR\n");
        for (i, n) in self.services.iter().enumerate() {
            let _ = writeln!(s, "  s{i}[\"{}\"]", q(n));
        }
        for (k, p) in self.entry_points.iter().enumerate() {
            let _ = writeln!(
                s,
                "  in{k}[(\"{}\")] --> s{}",
                q(&p.binding.to_string()),
                p.service
            );
        }
        for e in &self.edges {
            let arrow = if e.certainty == Certainty::Maybe {
                "-.->"
            } else {
                "-->"
            };
            let _ = writeln!(
                s,
                "  s{} {arrow}|\"{}\"| s{}",
                e.from,
                q(&e.via.to_string()),
                e.to
            );
        }
        for (k, p) in self.results.iter().enumerate() {
            let _ = writeln!(
                s,
                "  s{} --> out{k}[(\"{}\")]",
                p.service,
                q(&p.binding.to_string())
            );
        }
        s
    }

    pub fn to_dot(&self) -> String {
        let q = |t: &str| t.replace('\\', "\\\\").replace('"', "\\\"");
        let mut s = String::from("digraph workflow {\n  rankdir=LR;\n  node [shape=box];\n");
        for (i, n) in self.services.iter().enumerate() {
            let _ = writeln!(s, "  s{i} [label=\"{}\"];", q(n));
        }
        for (k, p) in self.entry_points.iter().enumerate() {
            let _ = writeln!(
                s,
                "  in{k} [shape=cylinder, label=\"{}\"];\n  in{k} -> s{};",
                q(&p.binding.to_string()),
                p.service
            );
        }
        for e in &self.edges {
            let style = if e.certainty == Certainty::Maybe {
                ", style=dashed"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "  s{} -> s{} [label=\"{}\"{style}];",
                e.from,
                e.to,
                q(&e.via.to_string())
            );
        }
        for (k, p) in self.results.iter().enumerate() {
            let _ = writeln!(
                s,
                "  out{k} [shape=cylinder, label=\"{}\"];\n  s{} -> out{k};",
                q(&p.binding.to_string()),
                p.service
            );
        }
        s.push_str("}\n");
        s
    }
}

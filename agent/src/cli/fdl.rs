//! `fogd validate` and `fogd graph`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::GraphFormat;
use crate::fdl::{self, graph, LoadOptions, Report, Script, Workflow};

pub(super) fn validate(files: &[PathBuf], opts: LoadOptions, json: bool) -> anyhow::Result<ExitCode> {
    let reports: Vec<Report> = files.iter().map(|f| fdl::load_file(f, opts)).collect();
    let all_valid = reports.iter().all(Report::is_valid);
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &reports)?;
        writeln!(out)?;
    } else {
        for r in &reports {
            print_report(&mut out, r)?;
        }
        if reports.len() > 1 {
            let bad = reports.iter().filter(|r| !r.is_valid()).count();
            writeln!(
                out,
                "{} file(s): {} valid, {bad} invalid",
                reports.len(),
                reports.len() - bad
            )?;
        }
    }
    Ok(if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_NO)
    })
}

fn print_report(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    let errors = r.errors().count();
    let warnings = r.warnings().count();
    let verdict = if r.is_valid() { "valid" } else { "INVALID" };
    writeln!(
        out,
        "{}: {verdict} ({errors} error(s), {warnings} warning(s))",
        r.file.display()
    )?;
    if let Some(wf) = &r.workflow {
        print_workflow(out, wf)?;
    }
    for d in r.warnings().chain(r.errors()) {
        writeln!(out, "  {d}")?;
    }
    Ok(())
}

fn print_workflow(out: &mut impl Write, wf: &Workflow) -> std::io::Result<()> {
    writeln!(out, "  dialect: {:?}", wf.dialect)?;
    writeln!(out, "  services ({}):", wf.services.len())?;
    for s in &wf.services {
        let script = match &s.script {
            Some(Script::File(p)) => format!("script {}", p.display()),
            Some(Script::Inline(_)) => "inline script".into(),
            Some(Script::Unchecked(p)) => format!("script {p} (not checked)"),
            None => "no script".into(),
        };
        let image = s.image.as_deref().unwrap_or("-");
        writeln!(out, "    {} [{}] image {image}, {script}", s.name, s.platform)?;
        for i in &s.inputs {
            writeln!(out, "      in  {i}")?;
        }
        for o in &s.outputs {
            writeln!(out, "      out {o}")?;
        }
        if let Some(d) = &s.delegation {
            let to: Vec<String> = d
                .members
                .iter()
                .map(|m| m.cluster_id.clone().or_else(|| m.url.clone()).unwrap_or_default())
                .collect();
            writeln!(out, "      delegates ({}) to {}", d.policy, to.join(", "))?;
        }
    }
    let providers: Vec<String> = wf
        .providers
        .iter()
        .map(|p| format!("{}{}", p.reference, if p.implicit { " (implicit)" } else { "" }))
        .collect();
    writeln!(
        out,
        "  providers: {}",
        if providers.is_empty() {
            "none".into()
        } else {
            providers.join(", ")
        }
    )?;
    let g = graph::build(wf);
    let links: Vec<String> = g
        .edges
        .iter()
        .map(|e| format!("{} -> {}", g.services[e.from], g.services[e.to]))
        .collect();
    writeln!(
        out,
        "  links: {}",
        if links.is_empty() {
            "none".into()
        } else {
            links.join(", ")
        }
    )?;
    for c in &g.cycles {
        let names: Vec<&str> = c.iter().map(|&i| g.services[i].as_str()).collect();
        writeln!(
            out,
            "  note: cycle through {}: each output triggers the chain again",
            names.join(", ")
        )?;
    }
    if wf.services.iter().any(|s| s.image.is_some()) {
        writeln!(
            out,
            "  note: images are recorded; fogd's local executor runs the script on this host, not the image"
        )?;
    }
    Ok(())
}

pub(super) fn graph_cmd(
    files: &[PathBuf],
    opts: LoadOptions,
    format: GraphFormat,
) -> anyhow::Result<ExitCode> {
    let mut workflows = Vec::new();
    let mut failed = false;
    for f in files {
        let r = fdl::load_file(f, opts);
        for d in r.errors() {
            eprintln!("{d}");
        }
        failed |= !r.is_valid();
        if let Some(wf) = r.workflow {
            workflows.push(wf);
        }
    }
    if failed {
        eprintln!("fogd graph: fix the errors above first (`fogd validate` shows everything)");
        return Ok(ExitCode::from(super::EXIT_NO));
    }
    let wf = Workflow::merge(workflows);
    let g = graph::build(&wf);
    let text = match format {
        GraphFormat::Text => g.to_text(),
        GraphFormat::Mermaid => g.to_mermaid(),
        GraphFormat::Dot => g.to_dot(),
        GraphFormat::Json => serde_json::to_string_pretty(&g)? + "\n",
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

//! A fleet as a graph of jobs for a cluster scheduler, whatever the
//! scheduler (`slurm` submits it; a Kubernetes executor would too).
//!
//! Each job is an `osbuild build` of one manifest on a node with a store of
//! its own; the jobs share work through the OCI cache only. Where images
//! share a prefix of stages (the same ids), a prefix job builds it once and
//! pushes it, and the images (or longer shared prefixes) that start with it
//! run after it and pull it. An image on another image's tree (`base`) runs
//! after that image, its base given by id so a fresh store can pull it.

use std::collections::BTreeMap;

use crate::manifest::{Id, Manifest};

/// One job of the graph.
#[derive(Debug, Clone)]
pub struct Job {
    /// The image's name, or `shared-N` for a prefix.
    pub name: String,
    /// The image whose events its events are shown as: for a prefix, the
    /// first image that has it (as a local run shows the build there).
    pub image: usize,
    pub manifest: Manifest,
    /// The jobs (indices) that must succeed first.
    pub after: Vec<usize>,
    /// For an image's job: the object its output is (the assembler's image,
    /// or the tree when there is no assembler), pulled at the end.
    pub delivers: Option<Id>,
}

/// The jobs for `images`, those that others depend on first.
pub fn graph(images: &[(String, Manifest)]) -> Vec<Job> {
    let chains: Vec<Vec<Id>> = images.iter().map(|(_, m)| crate::plan::main_chain(m)).collect();
    let trees: Vec<Option<Id>> = images.iter().map(|(_, m)| crate::plan::tree_id(&m.pipeline)).collect();
    // Images that start from another's tree: after it; they share no prefix.
    let bases: Vec<Option<usize>> = images
        .iter()
        .enumerate()
        .map(|(i, (_, m))| {
            let base = m.pipeline.base.as_ref()?;
            (0..i).find(|j| trees[*j].as_ref() == Some(base) || images[*j].1.pipeline.name.as_ref() == Some(base))
        })
        .collect();
    // How many images (without a base) have each prefix, by its last id.
    let mut count: BTreeMap<&Id, usize> = BTreeMap::new();
    for (i, chain) in chains.iter().enumerate() {
        if bases[i].is_none() && images[i].1.pipeline.base.is_none() {
            for id in chain {
                *count.entry(id).or_default() += 1;
            }
        }
    }
    let shared = |id: &Id| count.get(id).copied().unwrap_or(0) >= 2;
    let mut jobs: Vec<Job> = Vec::new();
    // A prefix job where the images sharing a prefix part: a shared id whose
    // next id (in any chain) is had by fewer images, or that ends a chain.
    let mut prefix_job: BTreeMap<Id, usize> = BTreeMap::new();
    for (i, chain) in chains.iter().enumerate() {
        if bases[i].is_some() || images[i].1.pipeline.base.is_some() {
            continue;
        }
        let mut last: Option<usize> = None;
        for (depth, id) in chain.iter().enumerate() {
            if !shared(id) {
                break;
            }
            let next = chain.get(depth + 1).map_or(0, |n| count.get(n).copied().unwrap_or(0));
            if next == count[id] {
                continue;
            }
            let job = *prefix_job.entry(id.clone()).or_insert_with(|| {
                let mut manifest = images[i].1.clone();
                manifest.pipeline.stages.truncate(depth + 1);
                manifest.pipeline.assembler = None;
                manifest.pipeline.assembly_base = None;
                manifest.pipeline.name = None;
                jobs.push(Job {
                    name: format!("shared-{}", jobs.len() + 1),
                    image: i,
                    manifest,
                    after: last.into_iter().collect(),
                    delivers: None,
                });
                jobs.len() - 1
            });
            last = Some(job);
        }
    }
    let first_image_job = jobs.len();
    for (i, (name, manifest)) in images.iter().enumerate() {
        let mut manifest = manifest.clone();
        let mut after = Vec::new();
        if let Some(b) = bases[i] {
            after.push(first_image_job + b);
            manifest.pipeline.base = trees[b].clone();
        } else if manifest.pipeline.base.is_none() {
            // After the longest shared prefix it starts with.
            if let Some(job) = chains[i].iter().rev().find_map(|id| prefix_job.get(id)) {
                after.push(*job);
            }
        }
        let plan = crate::plan::plan(&manifest, None).ok();
        let main = plan.as_ref().and_then(|p| p.pipelines.last());
        let delivers = main.and_then(|p| {
            p.assembler
                .as_ref()
                .map(|a| a.id.clone())
                .or(p.tree().map(str::to_string))
        });
        jobs.push(Job {
            name: name.clone(),
            image: i,
            manifest,
            after,
            delivers,
        });
    }
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image(name: &str, stages: &[&str]) -> (String, Manifest) {
        let stages: Vec<_> = stages
            .iter()
            .map(|s| json!({"name": "org.osbuild.noop", "options": {"s": s}}))
            .collect();
        let text = json!({"stages": stages, "assembler": {"name": "org.osbuild.noop"}}).to_string();
        let manifest = crate::manifest::parse_manifest(crate::diagnostic::Source::new("m.json", text))
            .unwrap()
            .manifest;
        (name.to_string(), manifest)
    }

    fn shape(jobs: &[Job]) -> Vec<(String, usize, Vec<usize>)> {
        jobs.iter()
            .map(|j| (j.name.clone(), j.manifest.pipeline.stages.len(), j.after.clone()))
            .collect()
    }

    #[test]
    fn shared_prefixes_become_jobs_the_images_wait_for() {
        let images = [
            image("a", &["base", "web", "a"]),
            image("b", &["base", "web", "b"]),
            image("c", &["base", "db"]),
            image("d", &["other"]),
        ];
        let jobs = graph(&images);
        assert_eq!(
            shape(&jobs),
            [
                ("shared-1".into(), 1, vec![]),
                ("shared-2".into(), 2, vec![0]),
                ("a".into(), 3, vec![1]),
                ("b".into(), 3, vec![1]),
                ("c".into(), 2, vec![0]),
                ("d".into(), 1, vec![]),
            ]
        );
        assert!(jobs[0].manifest.pipeline.assembler.is_none() && jobs[0].delivers.is_none());
        assert!(jobs.iter().skip(2).all(|j| j.delivers.is_some()));
        assert_eq!(jobs[1].image, 0, "a prefix is shown as its first image's");
    }

    /// A prefix job has no assembler, so no assembly base; an image's job
    /// keeps its stages and its base, so it builds the image a local run
    /// does, byte for byte.
    #[test]
    fn image_jobs_keep_their_assembly_base_and_prefix_jobs_have_none() {
        let mut images = [image("a", &["base", "a"]), image("b", &["base", "b"])];
        for (_, m) in &mut images {
            m.pipeline.assembly_base = Some(1);
        }
        let jobs = graph(&images);
        assert_eq!(jobs.len(), 3);
        assert_eq!(jobs[0].manifest.pipeline.assembly_base, None);
        crate::plan::plan(&jobs[0].manifest, None).expect("a prefix job plans");
        for (job, (_, m)) in jobs[1..].iter().zip(&images) {
            assert_eq!(job.manifest, *m);
            let planned = crate::plan::plan(m, None).unwrap();
            let image = planned.pipelines[0].assembler.as_ref().map(|a| a.id.clone());
            assert_eq!(job.delivers, image);
        }
    }

    #[test]
    fn a_fleet_with_nothing_shared_is_one_job_per_image() {
        let jobs = graph(&[image("a", &["x"]), image("b", &["y"])]);
        assert_eq!(shape(&jobs), [("a".into(), 1, vec![]), ("b".into(), 1, vec![])]);
    }

    #[test]
    fn an_image_on_another_waits_for_it_and_names_its_base_by_id() {
        let a = image("a", &["base"]);
        let mut b = image("b", &["more"]);
        let mut named = a.1.clone();
        named.pipeline.name = Some("a-tree".into());
        b.1.pipeline.base = Some("a-tree".into());
        let jobs = graph(&[("a".into(), named.clone()), b]);
        assert_eq!(shape(&jobs), [("a".into(), 1, vec![]), ("b".into(), 1, vec![0])]);
        assert_eq!(jobs[1].manifest.pipeline.base, crate::plan::tree_id(&named.pipeline));
    }
}

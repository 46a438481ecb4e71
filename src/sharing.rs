//! What a fleet's images share: the stages every image has in common (built
//! once), the stages each adds on top, and stages several images add alike
//! that are not shared because what comes before them differs (moved
//! earlier, they would be built once). `osbuild inspect SCRIPT` shows it.
//! Lowering asks how much of each image another one shares
//! ([`shared_prefixes`]), for its `assembly_base`.

use std::collections::BTreeMap;

use crate::manifest::Id;
use crate::plan::Plan;

/// One stage of an image's chain: its name and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub id: Id,
    /// The canonical JSON of its options: alike stages have the same.
    options: String,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sharing {
    /// The stages every image starts with.
    pub common: Vec<Step>,
    /// Each image's stages after those (its assembler included).
    pub own: Vec<(String, Vec<Step>)>,
    /// A stage several images add with the same name and options but not
    /// the same id, with those images.
    pub unshared: Vec<(String, Vec<String>)>,
}

/// The sharing of `plans` (by image name), each image's chain followed
/// through the image whose tree it starts from.
pub fn sharing(plans: &[(String, &Plan)]) -> Sharing {
    let mut trees: BTreeMap<Id, Vec<Step>> = BTreeMap::new();
    let mut chains: Vec<(String, Vec<Step>)> = Vec::new();
    for (name, plan) in plans {
        let Some(main) = plan.pipelines.last() else { continue };
        let mut chain = main
            .base
            .as_ref()
            .map(|b| trees.get(b).cloned().unwrap_or_default())
            .unwrap_or_default();
        chain.extend(main.stages.iter().chain(&main.assembler).map(|s| Step {
            name: s.stage.name.clone(),
            id: s.id.clone(),
            options: serde_json::to_string(&s.stage.options).expect("JSON serializes"),
        }));
        if let Some(tree) = main.tree() {
            let own = chain.len() - usize::from(main.assembler.is_some());
            trees.insert(tree.to_string(), chain[..own].to_vec());
        }
        chains.push((name.clone(), chain));
    }
    let common_len = match chains.split_first() {
        Some(((_, first), rest)) => (0..first.len())
            .take_while(|i| {
                rest.iter()
                    .all(|(_, c)| c.get(*i).map(|s| &s.id) == Some(&first[*i].id))
            })
            .count(),
        None => 0,
    };
    let common = chains
        .first()
        .map(|(_, c)| c[..common_len].to_vec())
        .unwrap_or_default();
    let own: Vec<(String, Vec<Step>)> = chains.into_iter().map(|(n, c)| (n, c[common_len..].to_vec())).collect();
    // Alike stages (name and options) in several images' own stages, by id.
    let mut alike: BTreeMap<(String, String), BTreeMap<Id, Vec<String>>> = BTreeMap::new();
    for (image, steps) in &own {
        for s in steps {
            let images = alike.entry((s.name.clone(), s.options.clone())).or_default();
            let with = images.entry(s.id.clone()).or_default();
            if !with.contains(image) {
                with.push(image.clone());
            }
        }
    }
    let unshared = alike
        .into_iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|((name, _), ids)| (name, ids.into_values().flatten().collect()))
        .collect();
    Sharing { common, own, unshared }
}

/// For each chain of stage ids (an image's, in order): how many of its first
/// stages at least one other chain has too. An id stands for everything
/// before it, so that is the last position whose id another chain holds,
/// at any depth (an image on another's tree holds it deeper).
pub fn shared_prefixes(chains: &[Vec<Id>]) -> Vec<usize> {
    // In how many chains each id is, each chain counted once.
    let mut count: BTreeMap<&Id, usize> = BTreeMap::new();
    for chain in chains {
        let mut ids: Vec<&Id> = chain.iter().collect();
        ids.sort();
        ids.dedup();
        for id in ids {
            *count.entry(id).or_default() += 1;
        }
    }
    chains
        .iter()
        .map(|chain| {
            chain
                .iter()
                .rposition(|id| count.get(id).is_some_and(|n| *n >= 2))
                .map_or(0, |i| i + 1)
        })
        .collect()
}

/// The sharing, for people.
pub fn describe(s: &Sharing) -> String {
    let mut out = String::new();
    let images = s.own.len();
    match s.common.last() {
        Some(last) => out.push_str(&format!(
            "shared by all {images} images: {} stages, up to {} {} (built once)\n",
            s.common.len(),
            last.name,
            crate::monitor::short(&last.id)
        )),
        None => out.push_str(&format!("the {images} images share no first stage\n")),
    }
    let width = s.own.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (image, steps) in &s.own {
        let names: Vec<&str> = steps
            .iter()
            .map(|s| s.name.trim_start_matches("org.osbuild."))
            .collect();
        out.push_str(&format!(
            "  {image:width$}  adds {} {}: {}\n",
            steps.len(),
            if steps.len() == 1 { "stage" } else { "stages" },
            names.join(", ")
        ));
    }
    if !s.unshared.is_empty() {
        // Each name once, with the most images any of its stages is in.
        let mut alike: Vec<(&str, usize)> = Vec::new();
        for (name, with) in &s.unshared {
            let name = name.trim_start_matches("org.osbuild.");
            match alike.iter_mut().find(|(n, _)| *n == name) {
                Some((_, most)) => *most = (*most).max(with.len()),
                None => alike.push((name, with.len())),
            }
        }
        let alike: Vec<String> = alike.iter().map(|(n, k)| format!("{n} ({k} images)")).collect();
        out.push_str(&format!(
            "alike in several images, but built for each as what comes before them differs \
             (earlier, in the part they share, each would be built once): {}\n",
            alike.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Manifest, Pipeline, Stage};
    use serde_json::json;

    fn stage(name: &str, options: serde_json::Value) -> Stage {
        Stage {
            name: name.into(),
            options: options.as_object().cloned().unwrap(),
        }
    }

    fn plan_of(stages: Vec<Stage>, base: Option<String>) -> Plan {
        let m = Manifest {
            pipeline: Pipeline {
                stages,
                base,
                ..Default::default()
            },
            sources: None,
        };
        crate::plan::plan(&m, None).unwrap()
    }

    #[test]
    fn each_chain_shares_its_longest_prefix_any_other_has() {
        let ids = |s: &str| s.chars().map(|c| c.to_string()).collect::<Vec<Id>>();
        // a and b share 2, c shares 1 with them, d nothing; e stands on a's
        // first three (as an image on a's tree would) and adds one.
        let chains = [ids("abcd"), ids("abxy"), ids("az"), ids("q"), ids("cf"), vec![]];
        assert_eq!(shared_prefixes(&chains), [3, 2, 1, 0, 1, 0]);
        assert_eq!(shared_prefixes(&[ids("abc")]), [0], "one image alone shares nothing");
        // The same chain twice shares all of it.
        assert_eq!(shared_prefixes(&[ids("ab"), ids("ab")]), [2, 2]);
    }

    #[test]
    fn the_common_prefix_each_images_own_stages_and_alike_ones_not_shared() {
        let boot = stage("org.osbuild.noop", json!({"boot": 1}));
        let locale = stage("org.osbuild.locale", json!({"language": "C.UTF-8"}));
        let host = |h: &str| stage("org.osbuild.hostname", json!({"hostname": h}));
        // The locale after the host name: alike, but not shared.
        let web = plan_of(vec![boot.clone(), host("web"), locale.clone()], None);
        let db = plan_of(vec![boot.clone(), host("db"), locale.clone()], None);
        let web_tree = web.pipelines[0].tree().unwrap().to_string();
        // An image on web's tree continues web's chain.
        let extra = plan_of(vec![stage("org.osbuild.noop", json!({"x": 1}))], Some(web_tree));
        let s = sharing(&[("web".into(), &web), ("db".into(), &db), ("web-extra".into(), &extra)]);
        assert_eq!(s.common.len(), 1, "only the first stage is everyone's");
        let own: Vec<(String, Vec<String>)> = s
            .own
            .iter()
            .map(|(n, steps)| (n.clone(), steps.iter().map(|s| s.name.clone()).collect()))
            .collect();
        assert_eq!(own[0].1, ["org.osbuild.hostname", "org.osbuild.locale"]);
        assert_eq!(
            own[2].1,
            ["org.osbuild.hostname", "org.osbuild.locale", "org.osbuild.noop"]
        );
        assert_eq!(
            s.unshared,
            [(
                "org.osbuild.locale".to_string(),
                vec!["web".to_string(), "web-extra".to_string(), "db".to_string()]
            )]
        );
        let text = describe(&s);
        assert!(
            text.starts_with("shared by all 3 images: 1 stages, up to org.osbuild.noop"),
            "{text}"
        );
        assert!(text.contains("web        adds 2 stages: hostname, locale"), "{text}");
        assert!(
            text.contains("built for each as what comes before them differs"),
            "{text}"
        );
        assert!(text.contains(": locale (3 images)\n"), "{text}");
    }
}

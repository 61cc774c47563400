//! Canary rules: services, traffic routing, steps (including header, mirror and experiment
//! steps) and the budget fields. Split from `rollout.rs`, which holds the rules every strategy
//! shares and calls in here for `spec.strategy.canary`.

use super::rollout::{
    RolloutMetadata, check_analysis_args, check_anti_affinity, check_int_or_percent,
    check_revision_limit, check_rollout_analysis,
};
use super::{FieldPath, Problems, check_dry_run};
use crate::duration;
use crate::rollout::{
    CanaryStep, CanaryStrategy, RolloutExperimentStep, RolloutSpec, RolloutTrafficRouting,
    StringMatch, spec_ref,
};
use std::collections::BTreeSet;

/// The traffic router a canary uses, as far as the validation rules care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Router {
    Istio,
    Nginx,
    Alb,
    Smi,
    Ambassador,
    AppMesh,
    Traefik,
    Apisix,
    Plugins,
}

impl Router {
    fn json_name(self) -> &'static str {
        match self {
            Router::Istio => "istio",
            Router::Nginx => "nginx",
            Router::Alb => "alb",
            Router::Smi => "smi",
            Router::Ambassador => "ambassador",
            Router::AppMesh => "appMesh",
            Router::Traefik => "traefik",
            Router::Apisix => "apisix",
            Router::Plugins => "plugins",
        }
    }
}

fn routers(routing: &RolloutTrafficRouting) -> Vec<Router> {
    let mut found = Vec::new();
    let mut add = |present: bool, router| {
        if present {
            found.push(router);
        }
    };
    add(routing.istio.is_some(), Router::Istio);
    add(routing.nginx.is_some(), Router::Nginx);
    add(routing.alb.is_some(), Router::Alb);
    add(routing.smi.is_some(), Router::Smi);
    add(routing.ambassador.is_some(), Router::Ambassador);
    add(routing.app_mesh.is_some(), Router::AppMesh);
    add(routing.traefik.is_some(), Router::Traefik);
    add(routing.apisix.is_some(), Router::Apisix);
    add(
        routing.plugins.as_ref().is_some_and(|p| !p.is_empty()),
        Router::Plugins,
    );
    found
}

fn names(routers: &[Router]) -> String {
    routers
        .iter()
        .map(|r| r.json_name())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn check_canary(
    problems: &mut Problems,
    path: &FieldPath,
    spec: &RolloutSpec,
    canary: &CanaryStrategy,
    metadata: &RolloutMetadata<'_>,
) {
    check_surge_budget(problems, path, canary);
    let canary_service = canary.canary_service.as_deref().filter(|s| !s.is_empty());
    let stable_service = canary.stable_service.as_deref().filter(|s| !s.is_empty());
    if let (Some(c), Some(s)) = (canary_service, stable_service)
        && c == s
    {
        problems.error(
            &path.child("canaryService"),
            format!("{c:?} must differ from stableService"),
        );
    }
    let routing = canary.traffic_routing.as_ref();
    let active_routers = routing.map(routers).unwrap_or_default();
    if let Some(routing) = routing {
        check_traffic_routing(
            problems,
            &path.child("trafficRouting"),
            canary,
            routing,
            &active_routers,
        );
    }
    let has_routing = routing.is_some();
    if !has_routing {
        if canary.scale_down_delay_seconds.is_some() {
            problems.error(
                &path.child("scaleDownDelaySeconds"),
                "is only valid with trafficRouting",
            );
        }
        if canary.dynamic_stable_scale() {
            problems.error(
                &path.child("dynamicStableScale"),
                "is only valid with trafficRouting",
            );
        }
        if canary.abort_scale_down_delay_seconds.is_some() {
            problems.warning(
                &path.child("abortScaleDownDelaySeconds"),
                "has no effect without trafficRouting: a basic canary scales down at once on abort",
            );
        }
        if canary.min_pods_per_replica_set.is_some() {
            problems.warning(
                &path.child("minPodsPerReplicaSet"),
                "has no effect without trafficRouting",
            );
        }
    }
    if canary.dynamic_stable_scale() && canary.scale_down_delay_seconds.is_some() {
        problems.error(
            &path.child("dynamicStableScale"),
            "cannot be combined with scaleDownDelaySeconds",
        );
    }
    problems.non_negative(
        &path.child("scaleDownDelaySeconds"),
        canary.scale_down_delay_seconds,
    );
    problems.non_negative(
        &path.child("abortScaleDownDelaySeconds"),
        canary.abort_scale_down_delay_seconds,
    );
    problems.non_negative(
        &path.child("minPodsPerReplicaSet"),
        canary.min_pods_per_replica_set,
    );
    check_revision_limit(
        problems,
        &path.child("scaleDownDelayRevisionLimit"),
        canary.scale_down_delay_revision_limit,
        spec,
    );
    if let Some(ping_pong) = &canary.ping_pong {
        let ping_path = path.child("pingPong");
        if ping_pong.ping_service.is_empty() {
            problems.error(&ping_path.child("pingService"), "is required");
        }
        if ping_pong.pong_service.is_empty() {
            problems.error(&ping_path.child("pongService"), "is required");
        }
        if !ping_pong.ping_service.is_empty() && ping_pong.ping_service == ping_pong.pong_service {
            problems.error(
                &ping_path.child("pongService"),
                format!("{:?} must differ from pingService", ping_pong.pong_service),
            );
        }
        let supported = [Router::Alb, Router::Istio, Router::Plugins];
        if active_routers.is_empty() {
            problems.error(
                &ping_path,
                "requires trafficRouting with alb, istio or plugins",
            );
        } else if let Some(other) = active_routers.iter().find(|r| !supported.contains(r)) {
            problems.error(
                &ping_path,
                format!(
                    "is not supported with the {} traffic router (only alb, istio, plugins)",
                    other.json_name()
                ),
            );
        }
        if let Some(alb) = routing.and_then(|r| r.alb.as_ref())
            && alb.root_service.as_deref().is_none_or(str::is_empty)
        {
            problems.error(
                &path
                    .child("trafficRouting")
                    .child("alb")
                    .child("rootService"),
                "is required when pingPong is used with alb",
            );
        }
    }
    if let Some(anti_affinity) = &canary.anti_affinity {
        check_anti_affinity(problems, &path.child("antiAffinity"), anti_affinity);
    }
    let steps_path = path.child("steps");
    for (index, step) in canary.steps().iter().enumerate() {
        check_step(
            problems,
            &steps_path.index(index),
            canary,
            routing,
            &active_routers,
            step,
            metadata,
        );
    }
    if let Some(background) = &canary.analysis {
        let analysis_path = path.child("analysis");
        if let Some(start) = background.starting_step {
            let steps = canary.steps().len();
            if start < 0 || usize::try_from(start).is_ok_and(|s| s > steps) {
                problems.error(
                    &analysis_path.child("startingStep"),
                    format!("{start} is outside 0..{steps} (the number of steps)"),
                );
            }
        }
        let analysis = background.analysis();
        check_rollout_analysis(problems, &analysis_path, &analysis, metadata);
    }
}

fn check_surge_budget(problems: &mut Problems, path: &FieldPath, canary: &CanaryStrategy) {
    let surge = check_int_or_percent(problems, &path.child("maxSurge"), canary.max_surge.as_ref());
    let unavailable = check_int_or_percent(
        problems,
        &path.child("maxUnavailable"),
        canary.max_unavailable.as_ref(),
    );
    if surge == Some(0) && unavailable == Some(0) {
        problems.error(
            &path.child("maxUnavailable"),
            "maxSurge and maxUnavailable are both 0, so no pod could ever be replaced",
        );
    }
}

fn check_traffic_routing(
    problems: &mut Problems,
    path: &FieldPath,
    canary: &CanaryStrategy,
    routing: &RolloutTrafficRouting,
    active: &[Router],
) {
    if active.is_empty() {
        problems.error(path, "names no traffic router (istio, nginx, alb, smi, ambassador, appMesh, traefik, apisix or plugins)");
    }
    let ping_pong = canary.ping_pong.is_some();
    let needs_services = active.iter().any(|router| match router {
        Router::Alb => !ping_pong,
        Router::Istio => {
            !ping_pong
                && routing
                    .istio
                    .as_ref()
                    .is_some_and(|i| i.destination_rule.is_none())
        }
        Router::Plugins => false,
        _ => true,
    });
    if needs_services {
        let required_by = names(
            &active
                .iter()
                .copied()
                .filter(|r| *r != Router::Plugins)
                .collect::<Vec<_>>(),
        );
        let strategy_path = FieldPath::root("spec").child("strategy").child("canary");
        if canary.canary_service.as_deref().is_none_or(str::is_empty) {
            problems.error(
                &strategy_path.child("canaryService"),
                format!("is required with trafficRouting ({required_by})"),
            );
        }
        if canary.stable_service.as_deref().is_none_or(str::is_empty) {
            problems.error(
                &strategy_path.child("stableService"),
                format!("is required with trafficRouting ({required_by})"),
            );
        }
    }
    if let Some(max) = routing.max_traffic_weight {
        let max_path = path.child("maxTrafficWeight");
        if let Some(other) = active
            .iter()
            .find(|r| !matches!(r, Router::Nginx | Router::Plugins))
        {
            problems.error(
                &max_path,
                format!(
                    "is only supported with nginx or plugins, not {}",
                    other.json_name()
                ),
            );
        }
        if max <= 0 {
            problems.error(&max_path, format!("{max} must be positive"));
        }
    }
    if let Some(istio) = &routing.istio {
        let istio_path = path.child("istio");
        match (&istio.virtual_service, &istio.virtual_services) {
            (Some(_), Some(_)) => problems.error(
                &istio_path,
                "sets both virtualService and virtualServices; use one or the other",
            ),
            (None, None) if istio.destination_rule.is_none() => {
                problems.error(&istio_path, "needs virtualService or virtualServices")
            }
            _ => {}
        }
        let services = istio
            .virtual_service
            .iter()
            .map(|vs| (istio_path.child("virtualService"), vs))
            .chain(
                istio
                    .virtual_services
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(|(i, vs)| (istio_path.child("virtualServices").index(i), vs)),
            );
        for (vs_path, vs) in services {
            if vs.name.is_empty() {
                problems.error(&vs_path.child("name"), "is required");
            }
        }
        if let Some(rule) = &istio.destination_rule {
            let rule_path = istio_path.child("destinationRule");
            if rule.canary_subset_name.is_empty() {
                problems.error(&rule_path.child("canarySubsetName"), "is required");
            }
            if rule.stable_subset_name.is_empty() {
                problems.error(&rule_path.child("stableSubsetName"), "is required");
            }
            if !rule.canary_subset_name.is_empty()
                && rule.canary_subset_name == rule.stable_subset_name
            {
                problems.error(
                    &rule_path.child("canarySubsetName"),
                    format!(
                        "{:?} must differ from stableSubsetName",
                        rule.canary_subset_name
                    ),
                );
            }
        }
    }
    if let Some(nginx) = &routing.nginx {
        let nginx_path = path.child("nginx");
        let single = nginx
            .stable_ingress
            .as_deref()
            .is_some_and(|s| !s.is_empty());
        let several = nginx
            .stable_ingresses
            .as_ref()
            .is_some_and(|s| !s.is_empty());
        match (single, several) {
            (true, true) => problems.error(
                &nginx_path,
                "sets both stableIngress and stableIngresses; use one or the other",
            ),
            (false, false) => problems.error(&nginx_path, "needs stableIngress or stableIngresses"),
            _ => {}
        }
    }
    if let Some(alb) = &routing.alb {
        let alb_path = path.child("alb");
        let single = alb.ingress.as_deref().is_some_and(|s| !s.is_empty());
        let several = alb.ingresses.as_ref().is_some_and(|s| !s.is_empty());
        match (single, several) {
            (true, true) => problems.error(
                &alb_path,
                "sets both ingress and ingresses; use one or the other",
            ),
            (false, false) => problems.error(&alb_path, "needs ingress or ingresses"),
            _ => {}
        }
    }
    let mut seen = BTreeSet::new();
    for (index, route) in routing.managed_routes.iter().flatten().enumerate() {
        let route_path = path.child("managedRoutes").index(index).child("name");
        if route.name.is_empty() {
            problems.error(&route_path, "is required");
        } else if !seen.insert(route.name.as_str()) {
            problems.error(
                &route_path,
                format!("{:?} is listed more than once", route.name),
            );
        }
    }
}

fn check_step(
    problems: &mut Problems,
    path: &FieldPath,
    canary: &CanaryStrategy,
    routing: Option<&RolloutTrafficRouting>,
    active: &[Router],
    step: &CanaryStep,
    metadata: &RolloutMetadata<'_>,
) {
    let exclusive: Vec<&str> = [
        ("setWeight", step.set_weight.is_some()),
        ("pause", step.pause.is_some()),
        ("experiment", step.experiment.is_some()),
        ("analysis", step.analysis.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    let any_set = !exclusive.is_empty()
        || step.set_canary_scale.is_some()
        || step.set_header_route.is_some()
        || step.set_mirror_route.is_some()
        || step.plugin.is_some();
    if !any_set {
        problems.error(
            path,
            "sets no step kind (setWeight, pause, analysis, experiment, setCanaryScale, setHeaderRoute, setMirrorRoute or plugin)",
        );
    }
    if exclusive.len() > 1 {
        problems.error(
            path,
            format!(
                "sets {}; a step may set only one of setWeight, pause, experiment, analysis",
                exclusive.join(" and ")
            ),
        );
    }
    if let Some(weight) = step.set_weight {
        let max = canary.max_traffic_weight();
        if !(0..=max).contains(&weight) {
            problems.error(
                &path.child("setWeight"),
                format!("{weight} is outside 0..{max}"),
            );
        }
    }
    if let Some(duration) = step.pause.as_ref().and_then(|p| p.duration.as_ref())
        && let Err(err) = duration::from_int_or_string(duration)
    {
        problems.error(&path.child("pause").child("duration"), err.to_string());
    }
    if let Some(scale) = &step.set_canary_scale {
        let scale_path = path.child("setCanaryScale");
        if routing.is_none() {
            problems.error(&scale_path, "is only valid with trafficRouting");
        }
        let members = usize::from(scale.weight.is_some())
            + usize::from(scale.replicas.is_some())
            + usize::from(scale.match_traffic_weight.unwrap_or(false));
        if members != 1 {
            problems.error(
                &scale_path,
                "must set exactly one of weight, replicas, matchTrafficWeight: true",
            );
        }
        problems.non_negative(&scale_path.child("weight"), scale.weight);
        problems.non_negative(&scale_path.child("replicas"), scale.replicas);
    }
    if let Some(header) = &step.set_header_route {
        let header_path = path.child("setHeaderRoute");
        let supported = [Router::Istio, Router::Alb, Router::Apisix, Router::Plugins];
        check_router_support(problems, &header_path, active, &supported);
        check_managed_route(
            problems,
            &header_path.child("name"),
            header.name.as_deref(),
            routing,
        );
        let alb_only = active.contains(&Router::Alb);
        for (index, condition) in header.r#match.iter().flatten().enumerate() {
            let value_path = header_path.child("match").index(index).child("headerValue");
            if condition.header_name.is_empty() {
                problems.error(
                    &header_path.child("match").index(index).child("headerName"),
                    "is required",
                );
            }
            check_string_match(problems, &value_path, &condition.header_value);
            if alb_only
                && (condition.header_value.prefix.is_some()
                    || condition.header_value.regex.is_some())
            {
                problems.error(
                    &value_path,
                    "the alb traffic router only supports exact header matches",
                );
            }
        }
    }
    if let Some(mirror) = &step.set_mirror_route {
        let mirror_path = path.child("setMirrorRoute");
        check_router_support(
            problems,
            &mirror_path,
            active,
            &[Router::Istio, Router::Plugins],
        );
        check_managed_route(
            problems,
            &mirror_path.child("name"),
            Some(&mirror.name),
            routing,
        );
        if let Some(percentage) = mirror.percentage
            && !(0..=100).contains(&percentage)
        {
            problems.error(
                &mirror_path.child("percentage"),
                format!("{percentage} is outside 0..100"),
            );
        }
        for (index, block) in mirror.r#match.iter().flatten().enumerate() {
            let block_path = mirror_path.child("match").index(index);
            if let Some(method) = &block.method {
                check_string_match(problems, &block_path.child("method"), method);
            }
            if let Some(path_match) = &block.path {
                check_string_match(problems, &block_path.child("path"), path_match);
            }
            for (name, header) in block.headers.iter().flatten() {
                check_string_match(problems, &block_path.child("headers").child(name), header);
            }
        }
    }
    if let Some(experiment) = &step.experiment {
        check_experiment_step(
            problems,
            &path.child("experiment"),
            routing.is_some(),
            active,
            experiment,
            metadata,
        );
    }
    if let Some(analysis) = &step.analysis {
        check_rollout_analysis(problems, &path.child("analysis"), analysis, metadata);
    }
    if let Some(plugin) = &step.plugin
        && plugin.name.is_empty()
    {
        problems.error(&path.child("plugin").child("name"), "is required");
    }
}

fn check_router_support(
    problems: &mut Problems,
    path: &FieldPath,
    active: &[Router],
    supported: &[Router],
) {
    if active.is_empty() {
        problems.error(
            path,
            format!("requires trafficRouting with one of: {}", names(supported)),
        );
    } else if let Some(other) = active.iter().find(|r| !supported.contains(r)) {
        problems.error(
            path,
            format!(
                "is not supported by the {} traffic router (only {})",
                other.json_name(),
                names(supported)
            ),
        );
    }
}

fn check_managed_route(
    problems: &mut Problems,
    path: &FieldPath,
    name: Option<&str>,
    routing: Option<&RolloutTrafficRouting>,
) {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        problems.error(path, "is required");
        return;
    };
    let Some(routing) = routing else { return };
    if routing.managed_routes.as_ref().is_none_or(Vec::is_empty) {
        problems.error(
            path,
            format!(
                "{name:?} needs spec.strategy.canary.trafficRouting.managedRoutes, which is empty"
            ),
        );
    } else if !routing.managed_route_names().any(|n| n == name) {
        problems.error(
            path,
            format!("{name:?} is not listed in spec.strategy.canary.trafficRouting.managedRoutes"),
        );
    }
}

fn check_string_match(problems: &mut Problems, path: &FieldPath, value: &StringMatch) {
    let set = usize::from(value.exact.is_some())
        + usize::from(value.prefix.is_some())
        + usize::from(value.regex.is_some());
    if set != 1 {
        problems.error(
            path,
            format!("sets {set} of exact, prefix, regex; exactly one is required"),
        );
    }
}

fn check_experiment_step(
    problems: &mut Problems,
    path: &FieldPath,
    has_routing: bool,
    active: &[Router],
    experiment: &RolloutExperimentStep,
    metadata: &RolloutMetadata<'_>,
) {
    if let Some(duration) = experiment.duration.as_deref()
        && let Err(err) = duration::parse(duration)
    {
        problems.error(&path.child("duration"), err.to_string());
    }
    problems.non_negative(
        &path.child("scaleDownDelaySeconds"),
        experiment.scale_down_delay_seconds,
    );
    check_dry_run(
        problems,
        &path.child("dryRun"),
        experiment.dry_run.as_deref().unwrap_or_default(),
    );
    let templates_path = path.child("templates");
    if experiment.templates.is_empty() {
        problems.error(&templates_path, "at least one template is required");
    }
    let mut seen = BTreeSet::new();
    for (index, template) in experiment.templates.iter().enumerate() {
        let template_path = templates_path.index(index);
        if template.name.is_empty() {
            problems.error(&template_path.child("name"), "is required");
        } else if !seen.insert(template.name.as_str()) {
            problems.error(
                &template_path.child("name"),
                format!("{:?} is used by more than one template", template.name),
            );
        }
        if ![spec_ref::CANARY, spec_ref::STABLE].contains(&template.spec_ref.as_str()) {
            problems.error(
                &template_path.child("specRef"),
                format!("{:?} is not canary or stable", template.spec_ref),
            );
        }
        problems.non_negative(&template_path.child("replicas"), template.replicas);
        if let Some(weight) = template.weight {
            let weight_path = template_path.child("weight");
            if !has_routing {
                problems.error(&weight_path, "is only valid with trafficRouting");
            } else if let Some(other) = active.iter().find(|r| {
                !matches!(
                    r,
                    Router::Alb | Router::Smi | Router::Istio | Router::Plugins
                )
            }) {
                problems.error(
                    &weight_path,
                    format!(
                        "is not supported by the {} traffic router (only alb, smi, istio, plugins)",
                        other.json_name()
                    ),
                );
            }
            if !(0..=100).contains(&weight) {
                problems.error(&weight_path, format!("{weight} is outside 0..100"));
            }
        }
    }
    let mut analysis_names = BTreeSet::new();
    for (index, analysis) in experiment.analyses.iter().flatten().enumerate() {
        let analysis_path = path.child("analyses").index(index);
        if !analysis_names.insert(analysis.name.as_str()) {
            problems.error(
                &analysis_path.child("name"),
                format!("{:?} is used by more than one analysis", analysis.name),
            );
        }
        if analysis.template_name.is_empty() {
            problems.error(&analysis_path.child("templateName"), "is required");
        }
        if let Some(args) = &analysis.args {
            check_analysis_args(problems, &analysis_path.child("args"), args, metadata);
        }
    }
}

//! Resource limits (`limits:`): each must let something through, and one source address
//! must not be able to take every receiver slot. The rules are the runtime's
//! (`Limits::problems`), so `validate` and a starting gateway refuse the same limits.

use hl7gw_runtime::config::defaults;

use crate::diag::Diagnostic;
use crate::spec::LoadedSpec;

pub(super) fn check(spec: &LoadedSpec, out: &mut Vec<Diagnostic>) {
    for (env, e) in spec.spec.environments.iter() {
        let limits = e.limits.unwrap_or_default();
        let max_body = e
            .receive
            .as_ref()
            .map(|r| r.max_body.unwrap_or(defaults::MAX_BODY).bytes());
        for problem in limits.problems(max_body) {
            out.push(spec.at_value(
                Diagnostic::error("env-limits", problem.message)
                    .detail("the gateway refuses to start with these limits; leave `limits` out for the defaults (docs/spec.md, limits)"),
                &format!("/environments/{}/limits/{}", env.as_str(), problem.key),
            ));
        }
    }
}

//! The engine: pure (no clock, randomness, environment, network or writes)
//! and bounded (operations, call depth, sizes).

use std::sync::Arc;

use rhai::packages::{
    BasicArrayPackage, BasicMapPackage, BasicMathPackage, BitFieldPackage, CorePackage, LogicPackage,
    MoreStringPackage, Package,
};
use rhai::{Engine, Module, Scope};

use super::api::{self, State};
use super::modules::{Resolver, Sources, PRELUDE, PRELUDE_NAME};

/// The limits every evaluation runs under.
pub struct Limits {
    pub operations: u64,
    pub call_levels: usize,
    pub expr_depth: usize,
    pub fn_expr_depth: usize,
    pub string_size: usize,
    pub array_size: usize,
    pub map_size: usize,
    pub modules: usize,
}

/// About a second of work on this machine in a release build: `loop {}` ends
/// with a diagnostic instead of hanging. A 1000-image fleet needs well under
/// a tenth of it.
pub const LIMITS: Limits = Limits {
    operations: 20_000_000,
    call_levels: 64,
    expr_depth: 64,
    fn_expr_depth: 48,
    string_size: 16 << 20,
    array_size: 100_000,
    map_size: 100_000,
    modules: 256,
};

/// The stack the evaluation thread gets: deep call levels need room in
/// debug builds.
pub const STACK_SIZE: usize = 256 << 20;

/// An engine that only parses: to read a module's function definitions
/// (signatures, completion), as deeply nested as the evaluator allows.
pub fn parser() -> Engine {
    let mut engine = Engine::new_raw();
    engine.set_max_expr_depths(LIMITS.expr_depth, LIMITS.fn_expr_depth);
    engine
}

/// A pure, bounded engine with the core API, the stdlib resolver and the prelude.
pub fn build(state: Arc<State>, sources: Arc<Sources>) -> Result<Engine, Box<rhai::EvalAltResult>> {
    let mut engine = Engine::new_raw();
    // Chosen packages: no BasicTimePackage (timestamp), no blobs.
    CorePackage::new().register_into_engine(&mut engine);
    LogicPackage::new().register_into_engine(&mut engine);
    BasicMathPackage::new().register_into_engine(&mut engine);
    BitFieldPackage::new().register_into_engine(&mut engine);
    BasicArrayPackage::new().register_into_engine(&mut engine);
    BasicMapPackage::new().register_into_engine(&mut engine);
    MoreStringPackage::new().register_into_engine(&mut engine);
    // `eval` would hide code from positions and diagnostics.
    engine.disable_symbol("eval");
    // print and debug go to stderr: stdout carries the manifest.
    engine.on_print(|text| eprintln!("{text}"));
    engine.on_debug(|text, source, pos| match (source, pos.line()) {
        (Some(s), Some(l)) => eprintln!("{s}:{l}: {text}"),
        _ => eprintln!("{text}"),
    });
    engine
        .set_max_operations(sources.max_operations)
        .set_max_call_levels(LIMITS.call_levels)
        .set_max_expr_depths(LIMITS.expr_depth, LIMITS.fn_expr_depth)
        .set_max_string_size(LIMITS.string_size)
        .set_max_array_size(LIMITS.array_size)
        .set_max_map_size(LIMITS.map_size)
        .set_max_modules(LIMITS.modules)
        .set_strict_variables(true);
    api::register(&mut engine, state);
    engine.set_module_resolver(Resolver::new(sources));

    let mut prelude = engine.compile(PRELUDE)?;
    prelude.set_source(PRELUDE_NAME);
    let mut module = Module::eval_ast_as_new(Scope::new(), &prelude, &engine)?;
    module.set_id(PRELUDE_NAME);
    engine.register_global_module(module.into());
    Ok(engine)
}

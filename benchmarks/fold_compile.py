"""XLA compile time of the compiled driver's ``train`` program before and after folding the BC-init
evaluation into the chunk scan (:meth:`bremen_jax.algo.schedule.Schedule.deployment`).

``python -m benchmarks.fold_compile [CONFIG] [ROUNDS]`` (default ``test 1``) lowers and compiles
``make_train`` for CONFIG with the old deployment (the evaluation as the preamble's last phase:
two Brax evaluation loops in the program) and the current one (one loop), alternating, with the
persistent compilation cache off; one JSON line per compile on stdout.
"""

import json
import os
import sys
import time

import jax


def _old_deployment(self, state, hp):
    state, pre = self.preamble(state, hp)
    state, chunks = jax.lax.scan(lambda s, _: self.chunk(s, hp), state, None,
                                 length=self.num_chunks)
    return state, {"preamble": pre, **chunks}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    jax.config.update("jax_enable_compilation_cache", False)
    from bremen_jax import config as config_lib
    from bremen_jax.algo.phases import make_phases
    from bremen_jax.algo.schedule import Schedule, make_train
    from bremen_jax.run.compile import compile_effort, compile_lowered

    name = argv[0] if argv else "test"
    rounds = int(argv[1]) if len(argv) > 1 else 1
    static, hp = config_lib.split(config_lib.load_config(name))
    new = Schedule.deployment
    try:
        for r in range(rounds):
            for label, deployment in (("old", _old_deployment), ("new", new)):
                Schedule.deployment = deployment
                t0 = time.perf_counter()
                low = jax.jit(make_train(Schedule(make_phases(static)))).lower(
                    jax.random.key(r), hp)
                t1 = time.perf_counter()
                compile_lowered(low, compile_effort(static.compile_effort))
                t2 = time.perf_counter()
                print(json.dumps({"config": name, "round": r, "code": label,
                                  "trace_lower_s": round(t1 - t0, 2), "xla_s": round(t2 - t1, 2),
                                  "hlo_chars": len(low.as_text()),
                                  "load1": round(os.getloadavg()[0], 2)}), flush=True)
    finally:
        Schedule.deployment = new
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

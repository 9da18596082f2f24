import sys, time, gc
sys.path.insert(0,'benchmarks')
from gen_spec import big_spec
from nndsl.syntax import parser as P
src = big_spec(10000)
L = P._lark()
P.parse_recovering(big_spec(10), "x")
gc.disable()
for _ in range(3):
    t=time.perf_counter(); toks=list(L.lex(src)); t1=time.perf_counter()-t
    t=time.perf_counter(); P._LEX.reset(); toks2=list(P._PostLex().process(iter(toks))) ; t2=time.perf_counter()-t
    t=time.perf_counter(); P.parse_recovering(src, "x"); t3=time.perf_counter()-t
    print(len(toks), f"lex {t1:.3f} post {t2:.3f} parse {t3:.3f}")

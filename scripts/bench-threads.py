#!/usr/bin/env python3
"""CPU time and context switches per call of each thread (by name) of the
benchmark's client and server processes, for one peer: samples
/proc/PID/task/*/stat while `bench --peers PEER` runs fib at 64 in flight.

Usage: scripts/bench-threads.py PEER [CALLS [ROUNDS]]   (after
`cargo build --release -p rpc-examples`; docs/BENCHMARKS.md quotes it)."""
import os, sys, time, subprocess, collections, re
peer=sys.argv[1]; calls=int(sys.argv[2]) if len(sys.argv)>2 else 40000; rounds=int(sys.argv[3]) if len(sys.argv)>3 else 2
cmd=[os.path.join(os.path.dirname(os.path.abspath(__file__)),"..","target","release","bench"),"--peers",peer,"--methods","fib","--in-flight","64","--calls",str(calls),"--rounds",str(rounds),"--park","10","--markdown",f"/tmp/thr-{peer}.md","--chart","/tmp/thr.svg"]
env=dict(os.environ)
p=subprocess.Popen(cmd,stdout=subprocess.DEVNULL,stderr=open(f"/tmp/thr-{peer}.err","w"),env=env)
hz=os.sysconf('SC_CLK_TCK')
last={}  # (role,tid)->(comm,ticks,ctx)
def role_of(pid):
    try: c=open(f"/proc/{pid}/cmdline").read().split('\0')
    except: return None
    if len(c)<2 or not c[0].endswith('bench'): return None
    if '--serve' in c: return 'server'
    if '--footprint' in c: return None
    if '--peers' in c: return 'client'
    return None
while p.poll() is None:
    for pid in os.listdir('/proc'):
        if not pid.isdigit(): continue
        r=role_of(pid)
        if not r: continue
        try: tids=os.listdir(f"/proc/{pid}/task")
        except: continue
        for tid in tids:
            try:
                st=open(f"/proc/{pid}/task/{tid}/stat").read()
                comm=st[st.index('(')+1:st.rindex(')')]
                f=st[st.rindex(')')+2:].split()
                ticks=int(f[11])+int(f[12])
                sch=open(f"/proc/{pid}/task/{tid}/status").read()
                v=int(re.search(r'voluntary_ctxt_switches:\s+(\d+)',sch).group(1)); nv=int(re.search(r'nonvoluntary_ctxt_switches:\s+(\d+)',sch).group(1))
                last[(r,pid,tid)]=(comm,ticks,v+nv)
            except Exception: pass
    time.sleep(0.1)
total_calls=rounds*(calls+min(max(calls//10,50),1000))
agg=collections.defaultdict(lambda:[0,0])
for (r,pid,tid),(comm,ticks,ctx) in last.items():
    name=re.sub(r'[-\d]+$','',comm) or comm
    agg[(r,name)][0]+=ticks; agg[(r,name)][1]+=ctx
print(f"peer {peer}: {total_calls} calls")
for (r,name),(ticks,ctx) in sorted(agg.items()):
    if ticks==0 and ctx<10: continue
    print(f"  {r:6} {name:20} {ticks/hz*1e6/total_calls:7.1f} us/call  {ctx/total_calls:6.2f} switches/call")

//! The web console at `GET /`: one self-contained page (no external assets, works offline)
//! that polls `/v1/cluster` and draws the topology, shard leaders, the replication lag matrix
//! between regions, round trips and clock offsets to peers, the conflicts async keyspaces
//! resolved (rate and latest), region health with the failover pause and pending decisions,
//! and the timeline of leader changes and failovers.

use axum::response::Html;

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Meridian console</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.5rem}
.regions{display:flex;gap:1rem;flex-wrap:wrap}
.region{border:1px solid #bbb;border-radius:6px;padding:.6rem 1rem;min-width:14rem}
.up{color:#197a2e}.down{color:#b3261e}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:left}
.away{background:#fff3cd}.failover{background:#fde2e1}
td.num{text-align:right;font-variant-numeric:tabular-nums}
</style></head>
<body>
<h1>Meridian console <small id="observer"></small></h1>
<div id="login" hidden><p id="login-why"></p><form onsubmit="useToken(event)"><input id="token-input" type="password" autocomplete="off" placeholder="mrd_... (meridian auth token create)" size="60"> <button>Use this token</button></form></div>
<h2>Topology</h2><div class="regions" id="regions">loading…</div>
<h2>Failover</h2>
<p id="failover-mode"></p>
<table id="health"><thead><tr><th>region</th><th>health</th><th>for</th><th>write p99 (ms)</th><th>fsync p99 (ms)</th><th>write errors</th><th>heard by</th><th>unheard by</th><th>leaders</th></tr></thead><tbody></tbody></table>
<table id="pending"><thead><tr><th>pending decision</th><th>what</th><th>approve with</th></tr></thead><tbody></tbody></table>
<h2>Promotions</h2>
<p><small>survive = "zone" keyspaces promoted out of a lost home region: what each promotion lost (at least what was known then; exactly once the old region returned). <code>GET /v1/failover/lost-tail/{keyspace}</code> lists the writes.</small></p>
<table id="promotions"><thead><tr><th>keyspace</th><th>epoch</th><th>from</th><th>to</th><th>decision</th><th>lost entries (at least)</th><th>lost writes (exact)</th></tr></thead><tbody></tbody></table>
<h2>Shard leaders</h2><table id="shards"><thead><tr><th>keyspace</th><th>shard</th><th>home region (async: the group's region)</th><th>leader</th><th>leader region</th><th>voters (w: witness)</th></tr></thead><tbody></tbody></table>
<h2>Replication lag between regions</h2>
<p><small>Rows: the leader's region; columns: the replica's region. Each cell: worst staleness of applied state (ms) / worst entries behind.</small></p>
<table id="lag"><thead></thead><tbody></tbody></table>
<h2>Async replication lag</h2>
<p><small>Async keyspaces, per (source region, destination region): age of the oldest write not yet applied at the destination, entries behind, and the delivery delay of writes (HLC to commit there).</small></p>
<table id="async"><thead><tr><th>keyspace</th><th>source</th><th>destination</th><th>lag (ms)</th><th>entries behind</th><th>delivery p50 (ms)</th><th>delivery p99 (ms)</th><th>link</th></tr></thead><tbody></tbody></table>
<h2>Conflicts</h2>
<p><small>Async keyspaces, as this node's region recorded them: the rate of conflicts resolved (per second, since the last refresh), the total, and the latest few (<code>GET /v1/conflicts/{keyspace}</code> for all).</small></p>
<table id="conflicts"><thead><tr><th>keyspace</th><th>type</th><th>rate (/s)</th><th>recorded</th><th>dropped</th><th>latest</th></tr></thead><tbody></tbody></table>
<h2>Peers of this node</h2><table id="peers"><thead><tr><th>node</th><th>region</th><th>round trip (ms)</th><th>clock offset (ms)</th></tr></thead><tbody></tbody></table>
<h2>Leader timeline</h2><table id="events"><thead><tr><th>time</th><th>keyspace</th><th>shard</th><th>leader</th><th>region</th><th>kind</th><th>RTO (ms)</th><th>decision</th><th>reason</th></tr></thead><tbody></tbody></table>
<script>
let lastConflicts={},lastAt=0;
function esc(s){return String(s??'').replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]))}
// With [auth] enabled every request carries a token: from the address (#token=...), kept
// for this tab only (sessionStorage), or typed into the form a 401 or 403 shows.
function token(){const m=location.hash.match(/token=([^&]+)/);if(m){sessionStorage.setItem('meridian-token',decodeURIComponent(m[1]));history.replaceState(null,'',location.pathname)}return sessionStorage.getItem('meridian-token')}
function useToken(ev){ev.preventDefault();sessionStorage.setItem('meridian-token',document.getElementById('token-input').value.trim());document.getElementById('token-input').value='';refresh()}
async function api(path){const t=token();const r=await fetch(path,{headers:t?{'Authorization':'Bearer '+t}:{}});const login=document.getElementById('login');
  if(r.status===401||r.status===403){let why='this node needs a token';try{why=(await r.json()).error.message}catch(e){}document.getElementById('login-why').textContent=why;login.hidden=false;throw new Error('not signed in: '+why)}
  login.hidden=true;return r.json()}
async function refresh(){
  try{
    const c=await api('/v1/cluster');
    document.getElementById('observer').textContent='(as seen by node '+c.observed_by.node+' in '+c.observed_by.region+')';
    const byRegion={};for(const n of c.nodes){(byRegion[n.region]=byRegion[n.region]||[]).push(n)}
    const leaders={};for(const s of c.shards){if(s.leader!=null)leaders[s.leader]=(leaders[s.leader]||0)+1}
    const witness={};for(const n of c.nodes){if(n.role==='witness')witness[n.id]=true}
    document.getElementById('regions').innerHTML=Object.keys(byRegion).sort().map(r=>
      '<div class="region" data-region="'+esc(r)+'"><b>'+esc(r)+'</b><br>'+byRegion[r].map(n=>
        '<span class="'+(n.healthy?'up':'down')+'">● node '+n.id+'</span> '+esc(n.zone)+(n.role==='witness'?' · <i>witness</i>':'')+' — leads '+(leaders[n.id]||0)+' shard(s)'+(c.meta_leader===n.id?' · catalogue leader':'')).join('<br>')+'</div>').join('');
    const f=c.failover||{};const ev=f.evacuated||{};
    document.getElementById('failover-mode').innerHTML=(f.paused?'<b class="down">PAUSED</b>: automatic decisions wait for an operator (<code>meridian failover approve ID</code>)':'automatic')+
      ' · decision log head: '+esc(f.head?('#'+f.head.seq):'empty')+' (<code>meridian failover log --verify</code>)';
    document.querySelector('#health tbody').innerHTML=Object.entries(f.health||{}).map(([r,v])=>
      '<tr data-health="'+esc(r)+'"><td>'+esc(r)+'</td><td class="'+(v.health==='healthy'?'up':'down')+'">'+esc(v.health)+'</td><td>'+((f.health_clock_ms-v.since_ms)/1000).toFixed(0)+' s'+'</td><td class="num">'+esc(v.write_p99_ms!=null?v.write_p99_ms.toFixed(1):'–')+'</td><td class="num">'+esc(v.fsync_p99_ms!=null?v.fsync_p99_ms.toFixed(1):'–')+'</td><td class="num">'+esc(v.error_rate!=null?(v.error_rate*100).toFixed(1)+'%':'–')+'</td><td>'+esc((v.heard_by||[]).join(', '))+'</td><td>'+esc((v.unheard_by||[]).join(', '))+'</td><td>'+(ev[r]?'evacuated by decision #'+ev[r].decision+' (hold-down '+ev[r].holddown_ms+' ms)':'may hold leaders')+'</td></tr>').join('');
    document.querySelector('#pending tbody').innerHTML=(f.pending||[]).map(p=>
      '<tr><td>#'+p.id+'</td><td>'+esc(p.decision.action==='promote'?'promote '+p.decision.keyspace+' from '+p.decision.from+' to '+p.decision.to+' (epoch '+p.decision.epoch+')':p.decision.action+' '+(p.decision.region||''))+'</td><td><code>meridian failover approve '+p.id+'</code></td></tr>').join('')||'<tr><td colspan="3">none</td></tr>';
    document.querySelector('#promotions tbody').innerHTML=(c.lost_tails||[]).map(t=>
      '<tr data-promotion="'+esc(t.keyspace+'|'+t.epoch)+'"><td>'+esc(t.keyspace)+'</td><td>'+t.epoch+'</td><td>'+esc(t.from_region)+'</td><td>'+esc(t.to_region)+'</td><td>#'+t.decision+'</td><td class="num">'+t.lost_entries_at_least+'</td><td class="num">'+(t.recovered?t.lost_writes:'when '+esc(t.from_region)+' returns')+'</td></tr>').join('')||'<tr><td colspan="7">none</td></tr>';
    document.querySelector('#shards tbody').innerHTML=c.shards.map(s=>
      '<tr class="'+(s.leader_region&&s.leader_region!==(s.home_region??s.region)?'away':'')+'"><td>'+esc(s.keyspace)+'</td><td>'+s.shard+'</td><td>'+esc(s.home_region??s.region)+'</td><td>'+esc(s.leader??'none')+'</td><td>'+esc(s.leader_region??'none')+'</td><td>'+(s.voters||[]).map(v=>esc(v)+(witness[v]?' (w)':'')).join(', ')+'</td></tr>').join('');
    const rs=c.regions.slice().sort(),cell={};for(const l of c.lag){cell[l.source_region+'|'+l.dest_region]=l}
    document.querySelector('#lag thead').innerHTML='<tr><th>leader \\ replica</th>'+rs.map(r=>'<th>'+esc(r)+'</th>').join('')+'</tr>';
    document.querySelector('#lag tbody').innerHTML=rs.map(src=>'<tr><th>'+esc(src)+'</th>'+rs.map(dst=>{const l=cell[src+'|'+dst];
      return '<td class="num" data-lag="'+esc(src+'|'+dst)+'">'+(l?(l.lag_ms??'–')+' ms / '+(l.lag_entries??'–'):'')+'</td>'}).join('')+'</tr>').join('');
    document.querySelector('#async tbody').innerHTML=(c.async_lag||[]).map(l=>
      '<tr data-async="'+esc(l.keyspace+'|'+l.source_region+'|'+l.dest_region)+'"><td>'+esc(l.keyspace)+'</td><td>'+esc(l.source_region)+'</td><td>'+esc(l.dest_region)+'</td><td class="num">'+esc(l.lag_ms??'–')+'</td><td class="num">'+esc(l.lag_entries??'–')+'</td><td class="num">'+esc(l.delivery_p50_ms??'–')+'</td><td class="num">'+esc(l.delivery_p99_ms??'–')+'</td><td>'+(l.connected===false?'<span class="down">cut</span>':'ok')+'</td></tr>').join('');
    const now=Date.now(),dt=lastAt?(now-lastAt)/1000:0;
    document.querySelector('#conflicts tbody').innerHTML=(c.conflicts||[]).map(k=>{
      const prev=lastConflicts[k.keyspace],rate=(dt>0&&prev!=null)?((k.recorded-prev)/dt).toFixed(1):'–';
      return '<tr data-conflicts="'+esc(k.keyspace)+'"><td>'+esc(k.keyspace)+'</td><td>'+esc(k.conflict)+'</td><td class="num">'+rate+'</td><td class="num">'+k.recorded+'</td><td class="num">'+k.dropped+'</td><td>'+
        k.latest.map(e=>esc(e.key)+' '+esc(e.rule)+' '+esc(e.a_origin)+'/'+esc(e.b_origin)+' → '+esc(e.outcome)).join('<br>')+'</td></tr>'}).join('');
    for(const k of (c.conflicts||[]))lastConflicts[k.keyspace]=k.recorded;lastAt=now;
    document.querySelector('#peers tbody').innerHTML=c.peers.map(p=>
      '<tr><td>'+p.node+'</td><td>'+esc(p.region)+'</td><td class="num">'+p.rtt_ms.toFixed(1)+'</td><td class="num">'+p.clock_offset_ms+'</td></tr>').join('');
    document.querySelector('#events tbody').innerHTML=c.events.slice(-50).reverse().map(e=>
      '<tr class="'+(e.kind==='failover'?'failover':'')+'"><td>'+new Date(e.at_ms).toISOString().substr(11,12)+'</td><td>'+esc(e.keyspace)+'</td><td>'+e.shard+'</td><td>'+esc(e.to)+'</td><td>'+esc(e.to_region)+'</td><td>'+esc(e.kind)+'</td><td class="num">'+esc(e.rto_ms??'')+'</td><td>'+(e.decision!=null?'#'+e.decision:'')+'</td><td>'+esc(e.reason)+'</td></tr>').join('');
  }catch(err){document.getElementById('regions').textContent='cannot reach the node: '+err}
}
refresh();setInterval(refresh,1000);
</script></body></html>"#;

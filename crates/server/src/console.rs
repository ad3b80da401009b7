//! The web console at `GET /`: one self-contained page (no external assets, works offline)
//! that polls `/v1/cluster` and draws the topology, shard leaders, the replication lag matrix
//! between regions, round trips and clock offsets to peers, the conflicts async keyspaces
//! resolved (rate and latest), region health with the failover pause and pending decisions,
//! and the timeline of leader changes and failovers. Charts drawn in the page (inline SVG):
//! per-region write and read latency (p50, p99) and throughput, and replication lag per region
//! pair, over the last five minutes of samples the page itself took, with failovers marked on
//! the time axis with their RTO; and a graph of the regions with links labelled by round trip
//! and lag and the leaders drawn where they are. When the node serving the page stops
//! answering, the page moves to another node of the cluster by itself (carrying the token).

use axum::response::Html;

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

const PAGE: &str = r##"<!doctype html>
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
.charts{display:flex;flex-wrap:wrap;gap:1rem}figure{margin:0}figcaption{font-size:.85rem;color:#555}
svg.chart{width:480px;height:190px;border:1px solid #eee}svg text{font-size:10px;fill:#444}
#graph{width:560px;height:300px;border:1px solid #eee}#moving{background:#fff3cd;padding:.4rem}
</style></head>
<body>
<h1>Meridian console <small id="observer"></small></h1>
<div id="login" hidden><p id="login-why"></p><form onsubmit="useToken(event)"><input id="token-input" type="password" autocomplete="off" placeholder="mrd_... (meridian auth token create)" size="60"> <button>Use this token</button></form></div>
<p id="moving" hidden></p>
<h2>Topology</h2><div class="regions" id="regions">loading…</div>
<h2>Regions, links and leaders</h2>
<svg id="graph" viewBox="0 0 560 300" role="img" aria-label="regions, links labelled by round trip and lag, leaders"></svg>
<h2>Last five minutes</h2>
<p><small>Sampled by this page every second from <code>/v1/cluster</code>; latency as the receiving node measured it, the worst node of each region; failovers marked in red with their RTO.</small></p>
<div class="charts">
<figure><figcaption>Write latency per region (ms): p99 solid, p50 dashed</figcaption><svg class="chart" id="chart-write" viewBox="0 0 480 190"></svg></figure>
<figure><figcaption>Read latency per region (ms): p99 solid, p50 dashed</figcaption><svg class="chart" id="chart-read" viewBox="0 0 480 190"></svg></figure>
<figure><figcaption>Throughput per region (requests/s): writes solid, reads dashed</figcaption><svg class="chart" id="chart-tput" viewBox="0 0 480 190"></svg></figure>
<figure><figcaption>Replication lag per region pair (ms): sync solid, async dashed</figcaption><svg class="chart" id="chart-lag" viewBox="0 0 480 190"></svg></figure>
</div>
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
const HISTORY_MS=5*60*1000,COLORS=['#1f77b4','#d62728','#2ca02c','#9467bd','#ff7f0e','#8c564b','#e377c2','#17becf'];
let samples=[],failures=0,lastView=null;
function colorOf(i){return COLORS[i%COLORS.length]}
// One sample per refresh: per-region request totals and percentiles, lag per region pair.
function record(c){
  const s={t:Date.now(),req:{},lag:{},alag:{}};
  for(const q of c.region_requests||[])s.req[q.region]=q;
  for(const l of c.lag||[])if(l.source_region!==l.dest_region&&l.lag_ms!=null){const k=l.source_region+' → '+l.dest_region;s.lag[k]=Math.max(s.lag[k]??0,l.lag_ms)}
  for(const l of c.async_lag||[])if(l.lag_ms!=null){const k=l.source_region+' → '+l.dest_region;s.alag[k]=Math.max(s.alag[k]??0,l.lag_ms)}
  samples.push(s);samples=samples.filter(x=>s.t-x.t<=HISTORY_MS)}
function nice(v){if(!(v>0))return 1;const p=Math.pow(10,Math.floor(Math.log10(v)));for(const m of [1,2,2.5,5,10])if(m*p>=v)return m*p;return 10*p}
// series: [{name,color,dash,points:[[t,v|null]]}]; marks: [{t,label}]
function drawChart(id,series,marks){
  const svg=document.getElementById(id),W=480,H=190,L=46,R=10,T=10,B=34,now=Date.now(),t0=now-HISTORY_MS;
  let max=0;for(const s of series)for(const p of s.points)if(p[1]!=null)max=Math.max(max,p[1]);max=nice(max);
  const x=t=>L+(t-t0)/HISTORY_MS*(W-L-R),y=v=>T+(1-v/max)*(H-T-B);let o='';
  for(const f of [0,.5,1]){const v=max*f;o+='<line x1="'+L+'" x2="'+(W-R)+'" y1="'+y(v)+'" y2="'+y(v)+'" stroke="#eee"/><text x="'+(L-4)+'" y="'+(y(v)+3)+'" text-anchor="end">'+(+v.toFixed(1))+'</text>'}
  for(let m=5;m>=0;m--)o+='<text x="'+x(now-m*60000)+'" y="'+(H-B+12)+'" text-anchor="middle">'+(m?'-'+m+' min':'now')+'</text>';
  for(const k of marks||[])if(k.t>=t0)o+='<line class="failover-mark" x1="'+x(k.t)+'" x2="'+x(k.t)+'" y1="'+T+'" y2="'+(H-B)+'" stroke="#b3261e" stroke-dasharray="3,2"/><text x="'+(x(k.t)+2)+'" y="'+(T+8)+'" style="fill:#b3261e">'+esc(k.label)+'</text>';
  const last=[];let lx=L;
  series.forEach(s=>{let d='',pen=false;for(const [t,v] of s.points){if(v==null||t<t0){pen=false;continue}d+=(pen?'L':'M')+x(t).toFixed(1)+','+y(Math.min(v,max)).toFixed(1);pen=true}
    if(d)o+='<path d="'+d+'" fill="none" stroke="'+s.color+'" stroke-width="1.5"'+(s.dash?' stroke-dasharray="4,3"':'')+'/>';
    const lv=s.points.length?s.points[s.points.length-1][1]:null;last.push([s.name,lv]);
    if(!s.dash){o+='<rect x="'+lx+'" y="'+(H-12)+'" width="8" height="8" fill="'+s.color+'"/><text x="'+(lx+11)+'" y="'+(H-4)+'">'+esc(s.name)+'</text>';lx+=16+6*s.name.length}});
  if(!series.length)o+='<text x="'+(W/2)+'" y="'+(H/2)+'" text-anchor="middle">no data yet</text>';
  svg.innerHTML=o;svg.setAttribute('data-samples',samples.length);svg.setAttribute('data-last',JSON.stringify(last))}
function charts(c){
  const regions=(c.regions||[]).slice().sort(),marks=(c.events||[]).filter(e=>e.kind==='failover').map(e=>({t:e.at_ms,label:'failover '+e.keyspace+'/'+e.shard+(e.rto_ms!=null?' RTO '+e.rto_ms+' ms':'')}));
  const lat=(a,b)=>regions.flatMap((r,i)=>[{name:r,color:colorOf(i),points:samples.map(s=>[s.t,s.req[r]?.[a]??null])},{name:r+' p50',color:colorOf(i),dash:true,points:samples.map(s=>[s.t,s.req[r]?.[b]??null])}]);
  drawChart('chart-write',lat('write_p99_ms','write_p50_ms'),marks);
  drawChart('chart-read',lat('read_p99_ms','read_p50_ms'),marks);
  const tput=regions.flatMap((r,i)=>['writes_total','reads_total'].map((f,j)=>({name:j?r+' reads':r,color:colorOf(i),dash:j===1,points:samples.map((s,k)=>{const p=samples[k-1];if(!p||!s.req[r]||!p.req[r])return [s.t,null];const d=s.req[r][f]-p.req[r][f];return [s.t,d>=0?d*1000/Math.max(1,s.t-p.t):null]})})));
  drawChart('chart-tput',tput,marks);
  const total=samples.length?Object.values(samples[samples.length-1].req).reduce((a,q)=>a+q.writes_total+q.reads_total,0):0;
  document.getElementById('chart-tput').setAttribute('data-requests-total',total);
  const pairs=[...new Set(samples.flatMap(s=>Object.keys(s.lag)))].sort(),apairs=[...new Set(samples.flatMap(s=>Object.keys(s.alag)))].sort();
  drawChart('chart-lag',pairs.map((k,i)=>({name:k,color:colorOf(i),points:samples.map(s=>[s.t,s.lag[k]??null])})).concat(apairs.map((k,i)=>({name:k+' async',color:colorOf(i),dash:true,points:samples.map(s=>[s.t,s.alag[k]??null])}))),marks)}
// The regions on a circle, links labelled by measured round trip and worst lag either way,
// each node a dot (green healthy, red not) with the number of shards it leads.
function graph(c){
  const svg=document.getElementById('graph'),W=560,H=300,regions=(c.regions||[]).slice().sort(),pos={},n=regions.length;
  regions.forEach((r,i)=>{const a=-Math.PI/2+2*Math.PI*i/Math.max(n,1);pos[r]=[W/2+(n>1?170*Math.cos(a):0),H/2+(n>1?105*Math.sin(a):0)]});
  const rtt={};for(const l of c.region_rtt||[])rtt[l.a+'|'+l.b]=rtt[l.b+'|'+l.a]=l.rtt_ms;
  const lag={};for(const l of (c.lag||[]).concat(c.async_lag||[]))if(l.lag_ms!=null){const k=[l.source_region,l.dest_region].sort().join('|');lag[k]=Math.max(lag[k]??0,l.lag_ms)}
  const leads={};for(const s of c.shards||[])if(s.leader!=null)leads[s.leader]=(leads[s.leader]||0)+1;
  let o='';
  for(let i=0;i<n;i++)for(let j=i+1;j<n;j++){const a=regions[i],b=regions[j],[x1,y1]=pos[a],[x2,y2]=pos[b],k=[a,b].sort().join('|');
    o+='<line x1="'+x1+'" y1="'+y1+'" x2="'+x2+'" y2="'+y2+'" stroke="#999"/><text data-link="'+esc(k)+'" x="'+((x1+x2)/2)+'" y="'+((y1+y2)/2-4)+'" text-anchor="middle">'+(rtt[a+'|'+b]!=null?'rtt '+rtt[a+'|'+b].toFixed(0)+' ms':'rtt ?')+(lag[k]!=null?' · lag '+lag[k]+' ms':'')+'</text>'}
  for(const r of regions){const [x,y]=pos[r],ns=(c.nodes||[]).filter(m=>m.region===r);
    o+='<circle cx="'+x+'" cy="'+y+'" r="48" fill="#fafafa" stroke="#555"/><text x="'+x+'" y="'+(y-30)+'" text-anchor="middle" style="font-weight:bold">'+esc(r)+'</text>';
    ns.forEach((m,i)=>{const nx=x-36+i*(72/Math.max(ns.length-1,1)),ny=y;o+='<circle data-node="'+m.id+'" cx="'+nx+'" cy="'+ny+'" r="7" fill="'+(m.healthy?'#197a2e':'#b3261e')+'"'+(c.meta_leader===m.id?' stroke="#000" stroke-width="2"':'')+'/><text x="'+nx+'" y="'+(ny+18)+'" text-anchor="middle">'+m.id+(leads[m.id]?' ★'+leads[m.id]:'')+'</text>'})}
  svg.innerHTML=o+'<text x="8" y="'+(H-8)+'">★n: leads n shards · black ring: metadata leader</text>'}
// The serving node stopped answering three times in a row: open the page on another node.
function moveToAnotherNode(){
  if(!lastView)return;const here=location.host,mine=lastView.observed_by.region;
  const cand=(lastView.nodes||[]).filter(n=>n.http_addr&&n.http_addr!==here).sort((a,b)=>(b.healthy-a.healthy)||((b.region===mine)-(a.region===mine)));
  if(!cand.length)return;const t=token(),to=cand[Math.floor(failures/3-1)%cand.length];
  const m=document.getElementById('moving');m.hidden=false;m.textContent='node at '+here+' does not answer: moving to node '+to.id+' ('+to.region+')…';
  location.replace(location.protocol+'//'+to.http_addr+'/'+(t?'#token='+encodeURIComponent(t):''))}
async function refresh(){
  try{
    const c=await api('/v1/cluster');failures=0;lastView=c;record(c);charts(c);graph(c);
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
  }catch(err){document.getElementById('regions').textContent='cannot reach the node: '+err;
    if(!String(err).includes('not signed in')){failures++;if(failures%3===0)moveToAnotherNode()}}
}
refresh();setInterval(refresh,1000);
</script></body></html>"##;

// Shop front behaviour: every product click and button sends an event; "recommended for you" is
// reloaded after each event so the shopper sees it react. No external scripts.
(function () {
  const user = document.body.dataset.user || "";
  // The shop-front key ([serve] shop_front_key) when the service asks for keys: it may only report events.
  const headers = {"content-type": "application/json"};
  if (document.body.dataset.key) headers["x-api-key"] = document.body.dataset.key;
  function toast(text) {
    const t = document.getElementById("toast");
    if (!t) return;
    t.textContent = text; t.classList.add("show");
    setTimeout(() => t.classList.remove("show"), 1500);
  }
  async function send(item, type) {
    if (!user) return false;
    const r = await fetch("/events", {
      method: "POST", headers: headers,
      body: JSON.stringify({user_id: user, item_id: item, type: type}), keepalive: true,
    });
    return r.ok;
  }
  async function refreshRecs() {
    const box = document.getElementById("recs");
    if (!box || !user) return;
    const r = await fetch("/shop/recs?k=" + (box.dataset.k || 12));
    if (r.ok) { box.innerHTML = await r.text(); box.dataset.updated = String(Date.now()); }
  }
  document.addEventListener("click", async (e) => {
    const card = e.target.closest("a.card[data-item]");
    if (card && card.dataset.impression) {
      // A sponsored result: the advertiser pays for the click (once per impression).
      e.preventDefault();
      await fetch("/ads/click", {
        method: "POST", headers: headers,
        body: JSON.stringify({impression_id: card.dataset.impression}), keepalive: true,
      });
      if (user) await send(card.dataset.item, "click");
      window.location = card.href;
      return;
    }
    if (card && user) {
      e.preventDefault();
      await send(card.dataset.item, "click");
      window.location = card.href;
      return;
    }
    const act = e.target.closest("button[data-event]");
    if (act) {
      if (!user) { toast("choose a demo shopper first"); return; }
      if (await send(act.dataset.item, act.dataset.event)) {
        toast(act.dataset.event === "purchase" ? "bought" : "added to cart");
        await refreshRecs();
      }
    }
  });
  const who = document.getElementById("who");
  if (who) who.addEventListener("change", () => {
    document.cookie = "vitrina_user=" + encodeURIComponent(who.value) + "; path=/; SameSite=Lax";
    window.location.reload();
  });
  document.querySelectorAll("form.autosubmit input[type=file]").forEach((input) =>
    input.addEventListener("change", () => input.form.submit()));
  const view = document.body.dataset.viewItem;
  if (view && user) send(view, "view").then(refreshRecs);
})();

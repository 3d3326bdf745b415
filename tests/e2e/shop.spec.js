// The shop front in a real headless Chromium (Playwright core, Debian's chromium).
// Usage: node shop.spec.js BASE_URL SCREENSHOT_DIR SHOPPER PHOTO_PATH
// Prints one JSON line of what it saw; exits 1 on the first failed expectation.
const { chromium } = require("playwright-core");

const [base, shots, shopper, photo] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";

function expect(cond, what) { if (!cond) throw new Error("expected: " + what); }

async function recIds(page) {
  return page.$$eval("#recs a.card", (cards) => cards.map((c) => c.dataset.item));
}

(async () => {
  const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const seen = {};
  try {
    await page.goto(base + "/");
    expect((await page.textContent("#recs h2")).includes("Popular now"), "popular items before choosing a shopper");
    await Promise.all([page.waitForNavigation(), page.selectOption("#who", shopper)]);
    expect((await page.textContent("#recs h2")).includes("Recommended for you"), "personal recommendations");
    const before = await recIds(page);
    expect(before.length > 0, "recommendations shown");
    await page.screenshot({ path: shots + "/1-home.png", fullPage: true });

    await page.fill("input[name=q]", "drill");
    await Promise.all([page.waitForNavigation(), page.click("header button.primary")]);
    const titles = await page.$$eval("#results .card .title", (els) => els.map((e) => e.textContent));
    expect(titles.length > 0 && titles[0].toLowerCase().includes("drill"), "a drill first for 'drill'");
    seen.search = titles.slice(0, 3);
    await page.screenshot({ path: shots + "/2-search.png", fullPage: true });

    await Promise.all([page.waitForNavigation(), page.click("#results a.card >> nth=0")]);
    expect((await page.textContent("#product-title")).toLowerCase().includes("drill"), "the product page");
    await page.waitForFunction(() => document.querySelector("#recs").dataset.updated, null, { timeout: 10000 });
    const stamp = await page.getAttribute("#recs", "data-updated");
    await page.click("#add-to-cart");
    await page.waitForFunction((s) => document.querySelector("#recs").dataset.updated !== s, stamp, { timeout: 10000 });
    await page.click("#buy");
    await page.waitForTimeout(500);
    await page.screenshot({ path: shots + "/3-product.png", fullPage: true });

    await page.goto(base + "/");
    const after = await recIds(page);
    expect(JSON.stringify(after) !== JSON.stringify(before), "recommendations changed after the events");
    seen.before = before.slice(0, 6);
    seen.after = after.slice(0, 6);
    await page.screenshot({ path: shots + "/4-home-after-events.png", fullPage: true });

    await Promise.all([page.waitForNavigation(), page.setInputFiles("#photo-input", photo)]);
    const found = await page.$$eval("#results a.card", (els) => els.map((e) => e.dataset.item));
    expect(found.length > 0, "results for the uploaded photo");
    seen.photo = found.slice(0, 3);
    await page.screenshot({ path: shots + "/5-photo-search.png", fullPage: true });

    await page.goto(base + "/admin");
    expect((await page.textContent("h1")).includes("Dashboard"), "the dashboard");
    await page.waitForFunction(() => document.querySelector("#map-plot").naturalWidth > 0, null, { timeout: 20000 });
    await page.screenshot({ path: shots + "/6-dashboard.png", fullPage: true });
    console.log(JSON.stringify(seen));
  } catch (err) {
    await page.screenshot({ path: shots + "/failure.png", fullPage: true }).catch(() => {});
    console.error(String(err && err.stack || err));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();

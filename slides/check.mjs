// check.mjs - render every slide of every deck in headless Chromium and fail
// on what would go wrong in front of a class:
//
//   cut off      an element reaches past the slide's 1280x720 box, or a box
//                that clips or scrolls (a code block, a table) hides content
//   margin       an element reaches into the slide's margin (the padding of
//                theme/workbook.css): the slide is too full, a projector's
//                overscan may cut it, the page number may cover it
//   too small    text or code whose EFFECTIVE size is under the minimum:
//                the computed font size times every scaling on the way to the
//                screen (Marp's auto-scaling of wide code blocks and fitted
//                headings, CSS transforms, zoom)
//   no image     an <img> or a background image that does not load
//   network      anything the slide tries to load from the web
//   count        the number of slides differs from `slides: N` in the deck's
//                front matter
//
// The minimum is 20 px on a 1280x720 slide (1/36 of its height: about 4.7 cm
// on a 3 m wide screen, readable from 12 m), below Marp's default body text
// (29 px) and its code (about 23 px).
//
// It names the deck and slide of each problem and saves a PNG of that slide.
//
// usage: node slides/check.mjs [--min-px N] [--shots DIR] [--every-slide] [DECK.md ...]
//        (no DECK: every deck in slides/; PNGs go to slides/out/check/;
//        --every-slide: a PNG of every slide, to look at them all)
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
	SLIDES_DIR, bareHtml, chromiumHome, declaredSlides, deckName, isDeck, launchChromium,
	listDecks, offlinePage,
} from './lib.mjs';

const SLIDE_W = 1280, SLIDE_H = 720;

function usage() {
	console.error('usage: node slides/check.mjs [--min-px N] [--shots DIR] [--every-slide] [DECK.md ...]');
	process.exit(2);
}

// Runs in the page: one report per slide.
function measureSlides(slideW) {
	const TOL = 1;		// px: sub-pixel rounding is not "cut off"
	const describe = (el) => {
		const text = (el.textContent || '').trim().replace(/\s+/g, ' ');
		// Marp renders some elements as custom ones (<marp-pre>): name the
		// Markdown's element.
		return `<${el.tagName.toLowerCase().replace(/^marp-/, '')}>` + (text ? ` "${text.slice(0, 40)}${text.length > 40 ? '...' : ''}"` : '');
	};
	const visible = (el) => {
		const cs = getComputedStyle(el);
		return cs.display !== 'none' && cs.visibility !== 'hidden';
	};
	const svgs = [...document.querySelectorAll('svg[data-marpit-svg]')];
	return svgs.map((svg) => {
		const section = svg.querySelector('foreignObject > section');
		const s = section.getBoundingClientRect();
		const slideScale = s.width / slideW;	// screen px per slide px
		const problems = [];
		let minFont = Infinity, minFontWhat = '';

		// Past the slide's edge (cut off), or into its margin, where a
		// projector's overscan cuts and the page number sits. Only the
		// outermost offender is named.
		const pad = getComputedStyle(section);
		const box = {
			left: s.left + parseFloat(pad.paddingLeft) * slideScale,
			right: s.right - parseFloat(pad.paddingRight) * slideScale,
			top: s.top + parseFloat(pad.paddingTop) * slideScale,
			bottom: s.bottom - parseFloat(pad.paddingBottom) * slideScale,
		};
		const past = [];
		for (const el of section.querySelectorAll('*')) {
			if (!visible(el))
				continue;
			const r = el.getBoundingClientRect();
			if (r.width === 0 && r.height === 0)
				continue;
			const over = {
				right: r.right - box.right, bottom: r.bottom - box.bottom,
				left: box.left - r.left, top: box.top - r.top,
			};
			const edge = {
				right: r.right - s.right, bottom: r.bottom - s.bottom,
				left: s.left - r.left, top: s.top - r.top,
			};
			const sides = Object.keys(over).filter((k) => over[k] > TOL);
			if (sides.length && !past.some((p) => p.el.contains(el)))
				past.push({ el, sides, over, edge });
		}
		const px = (v) => Math.round(v / slideScale);
		for (const { el, sides, over, edge } of past) {
			const cut = sides.filter((k) => edge[k] > TOL);
			if (cut.length)
				problems.push(`cut off: ${describe(el)} runs ` +
					cut.map((k) => `${px(edge[k])} px past the slide's ${k} edge`).join(', '));
			else
				problems.push(`in the margin: ${describe(el)} reaches ` +
					sides.map((k) => `${px(over[k])} px into the ${k} margin`).join(', ') +
					' (the slide is too full)');
		}

		// Cut off inside a box that clips or scrolls (a code block, a table).
		for (const el of section.querySelectorAll('*')) {
			if (!visible(el) || el.closest('svg:not([data-marpit-svg])'))
				continue;
			const cs = getComputedStyle(el);
			const clips = (o) => o !== 'visible';
			const hiddenX = clips(cs.overflowX) ? el.scrollWidth - el.clientWidth : 0;
			const hiddenY = clips(cs.overflowY) ? el.scrollHeight - el.clientHeight : 0;
			if (hiddenX > TOL || hiddenY > TOL) {
				const what = [hiddenX > TOL && `${hiddenX} px of width`,
					hiddenY > TOL && `${hiddenY} px of height`].filter(Boolean).join(' and ');
				problems.push(`cut off: ${describe(el)} hides ${what} (overflow: ${cs.overflowX}/${cs.overflowY})`);
			}
		}

		// The smallest effective font size of any visible text.
		const walker = document.createTreeWalker(section, NodeFilter.SHOW_TEXT);
		for (let n = walker.nextNode(); n; n = walker.nextNode()) {
			if (!n.data.trim())
				continue;
			const el = n.parentElement;
			if (!el || !visible(el) || !el.offsetWidth)
				continue;
			// Screen size of the text: the computed size times the ratio of
			// the element's drawn width to its layout width, which folds in
			// transforms, SVG viewBox scaling (Marp's fitting) and zoom.
			const drawn = el.getBoundingClientRect().width;
			const layout = el.offsetWidth;
			const fs = parseFloat(getComputedStyle(el).fontSize);
			const eff = fs * (drawn / layout) / slideScale;
			if (eff < minFont) {
				minFont = eff;
				minFontWhat = describe(el);
			}
		}

		// Images: <img> and CSS backgrounds (Marp's ![bg](...)).
		const images = [];
		for (const img of section.querySelectorAll('img'))
			images.push({ url: img.currentSrc || img.src, ok: img.complete && img.naturalWidth > 0 });
		for (const el of [section, ...section.querySelectorAll('*')]) {
			const bg = getComputedStyle(el).backgroundImage;
			for (const m of bg.matchAll(/url\("?([^")]*)"?\)/g))
				images.push({ url: m[1], ok: null });
		}
		return { problems, minFont, minFontWhat, images };
	});
}

// Runs in the page: does this image load?
function loads(url) {
	return new Promise((ok) => {
		const img = new Image();
		img.onload = () => ok(img.naturalWidth > 0);
		img.onerror = () => ok(false);
		img.src = url;
	});
}

async function checkDeck(browser, deck, minPx, shotsDir, everySlide, tmp) {
	const name = basename(deck);
	const remote = [];
	const page = await offlinePage(browser, (url) => remote.push(url));
	const problems = [];	// { slide (1-based or 0 for the deck), text }
	try {
		const html = await bareHtml(deck, tmp);
		await page.setViewport({ width: SLIDE_W, height: SLIDE_H });
		await page.goto(pathToFileURL(html).href, { waitUntil: 'load' });
		await page.evaluate(() => document.fonts.ready);
		// Marp's auto-scaling elements size themselves on the next frames.
		await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));

		const slides = await page.evaluate(measureSlides, SLIDE_W);
		const declared = declaredSlides(deck);
		if (declared === null)
			problems.push({ slide: 0, text: 'declares no slide count: add `slides: N` to its front matter' });
		else if (declared !== slides.length)
			problems.push({ slide: 0, text: `has ${slides.length} slides but declares slides: ${declared}` });

		let deckMin = { px: Infinity, slide: 0, what: '' };
		const named = new Set();	// remote URLs already reported per slide
		for (const [i, s] of slides.entries()) {
			const slide = i + 1;
			for (const text of s.problems)
				problems.push({ slide, text });
			if (s.minFont < minPx)
				problems.push({ slide, text: `too small: ${s.minFontWhat} is ${s.minFont.toFixed(1)} px (minimum ${minPx} px on a ${SLIDE_W}x${SLIDE_H} slide)` });
			if (s.minFont < deckMin.px)
				deckMin = { px: s.minFont, slide, what: s.minFontWhat };
			for (const img of s.images) {
				if (/^https?:/.test(img.url)) {
					problems.push({ slide, text: `loads ${img.url} from the network (the decks must work offline)` });
					named.add(img.url);
				} else if (!(img.ok ?? await page.evaluate(loads, img.url))) {
					problems.push({ slide, text: `missing image: ${decodeURI(img.url)}` });
				}
			}
		}
		for (const url of new Set(remote))
			if (!named.has(url))
				problems.push({ slide: 0, text: `loads ${url} from the network (the decks must work offline)` });

		// A PNG of every slide with a problem (or of every slide).
		const bad = [...new Set(problems.map((p) => p.slide))].filter((n) => n > 0);
		const svgs = await page.$$('svg[data-marpit-svg]');
		for (const n of everySlide ? svgs.map((_, i) => i + 1) : bad) {
			const png = join(shotsDir, `${deckName(deck)}-${String(n).padStart(2, '0')}.png`);
			await svgs[n - 1].screenshot({ path: png });
			problems.filter((p) => p.slide === n).forEach((p) => { p.png = png; });
		}
		return { name, slides: slides.length, problems, deckMin };
	} finally {
		await page.close();
	}
}

async function main() {
	const args = process.argv.slice(2);
	let minPx = 20, shotsDir = join(SLIDES_DIR, 'out', 'check'), everySlide = false;
	const decks = [];
	while (args.length) {
		const a = args.shift();
		if (a === '--min-px' && args.length)
			minPx = Number(args.shift());
		else if (a === '--shots' && args.length)
			shotsDir = args.shift();
		else if (a === '--every-slide')
			everySlide = true;
		else if (a.startsWith('-'))
			usage();
		else
			decks.push(a);
	}
	if (!(minPx > 0))
		usage();
	if (!decks.length)
		decks.push(...listDecks());
	for (const d of decks) {
		if (!isDeck(d)) {
			console.error(`check: ${d} is not a deck (no \`marp: true\` in its front matter)`);
			process.exit(2);
		}
	}
	mkdirSync(shotsDir, { recursive: true });

	const t0 = Date.now();
	const tmp = mkdtempSync(join(tmpdir(), 'slides-check-'));
	chromiumHome(tmp);
	const browser = await launchChromium();
	let total = 0, nproblems = 0;
	try {
		for (const deck of decks) {
			const r = await checkDeck(browser, deck, minPx, shotsDir, everySlide, tmp);
			total += r.slides;
			nproblems += r.problems.length;
			for (const p of r.problems) {
				const where = p.slide ? `${r.name} slide ${p.slide}` : r.name;
				console.log(`${where}: ${p.text}${p.png ? `  [${p.png}]` : ''}`);
			}
			console.log(`${r.name}: ${r.slides} slides, ${r.problems.length} problem(s), ` +
				`smallest text ${r.deckMin.px.toFixed(1)} px (slide ${r.deckMin.slide}: ${r.deckMin.what})`);
		}
	} finally {
		await browser.close();
		rmSync(tmp, { recursive: true, force: true });
	}
	const secs = ((Date.now() - t0) / 1000).toFixed(1);
	console.log(`check: ${decks.length} deck(s), ${total} slides, ${nproblems} problem(s), ` +
		`minimum ${minPx} px, ${secs} s`);
	process.exit(nproblems ? 1 : 0);
}

main().catch((e) => {
	console.error(`check: ${e.stack || e}`);
	process.exit(2);
});

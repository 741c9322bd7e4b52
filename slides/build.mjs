// build.mjs - build decks into slides/out/ (make slides runs it):
//
//   NAME.html            to project: Marp's viewer (arrow keys; `p` opens the
//                        presenter view with the notes and a timer)
//   NAME-handout.pdf     one slide per page, no notes: safe to give students
//                        (the notes hold the quiz answers)
//   NAME-presenter.pdf   A4 notes pages: each slide with its notes below it
//
// Everything is made offline: Marp CLI with marp.config.mjs, Debian's
// Chromium for the PDFs.
//
// A deck whose three files are newer than it and than the tools is skipped.
//
// usage: node slides/build.mjs [--force] [--out DIR] [DECK.md ...]
//        (no DECK: every deck in slides/)
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
	SLIDES_DIR, bareHtml, chromiumHome, deckName, frontMatter, isDeck, launchChromium, listDecks,
	marp, offlinePage,
} from './lib.mjs';

// Runs in the page (the deck's bare HTML): turn the slides into notes pages.
function toNotesPages(bespokeHtml, title) {
	const doc = new DOMParser().parseFromString(bespokeHtml, 'text/html');
	const notes = {};
	for (const n of doc.querySelectorAll('.bespoke-marp-note'))
		notes[n.dataset.index] = n.innerHTML;
	const svgs = [...document.querySelectorAll('body > svg[data-marpit-svg]')];
	const style = document.createElement('style');
	style.textContent = `
		@page { size: A4 portrait; margin: 14mm 16mm; }
		html, body { background: #fff !important; height: auto !important; overflow: visible !important; }
		body { margin: 0; font: 12pt/1.45 "DejaVu Sans", sans-serif; color: #000; }
		.np-page { break-after: page; }
		.np-page:last-child { break-after: auto; }
		.np-head { font-size: 9pt; color: #555; display: flex; justify-content: space-between; margin-bottom: 3mm; }
		body > .np-page > svg[data-marpit-svg] { display: block; box-sizing: border-box; width: 100% !important; height: auto !important; border: 1px solid #999; }
		svg > foreignObject > section { break-before: auto !important; page-break-before: auto !important; }
		.np-notes { margin-top: 6mm; }
		.np-notes p { margin: 0 0 2.5mm; }
		.np-notes code { font-family: "DejaVu Sans Mono", monospace; font-size: 95%; }
		.np-none { color: #777; font-style: italic; }`;
	document.head.append(style);
	svgs.forEach((svg, i) => {
		const page = document.createElement('div');
		page.className = 'np-page';
		const head = document.createElement('div');
		head.className = 'np-head';
		head.innerHTML = '<span></span><span></span>';
		head.children[0].textContent = title;
		head.children[1].textContent = `slide ${i + 1} of ${svgs.length}`;
		const body = document.createElement('div');
		body.className = 'np-notes';
		// The decks write their notes as <!-- notes: ... -->: drop the label.
		body.innerHTML = notes[i] ? notes[i].replace(/^<p>notes:\s*/, '<p>') : '<p class="np-none">(no notes)</p>';
		svg.replaceWith(page);
		page.append(head, svg, body);
	});
}

async function presenterPdf(browser, deck, bespoke, pdf) {
	const remote = [];
	const page = await offlinePage(browser, (url) => remote.push(url));
	try {
		const html = await bareHtml(deck, dirname(pdf));
		await page.goto(pathToFileURL(html).href, { waitUntil: 'load' });
		await page.evaluate(() => document.fonts.ready);
		const title = frontMatter(readFileSync(deck, 'utf8')).title || deckName(deck);
		await page.evaluate(toNotesPages, readFileSync(bespoke, 'utf8'), title);
		await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
		await page.pdf({ path: pdf, preferCSSPageSize: true, printBackground: true });
	} finally {
		await page.close();
	}
	if (remote.length)
		throw new Error(`${deck} loads ${remote[0]} from the network`);
}

// The files a deck's outputs are made from, besides the deck.
const TOOLS = ['theme/workbook.css', 'marp.config.mjs', 'build.mjs', 'lib.mjs', 'package-lock.json']
	.map((f) => join(SLIDES_DIR, f));

function upToDate(deck, outputs) {
	const mtime = (f) => statSync(f).mtimeMs;
	if (!outputs.every((f) => existsSync(f)))
		return false;
	const newestInput = Math.max(...[deck, ...TOOLS].map(mtime));
	return Math.min(...outputs.map(mtime)) >= newestInput;
}

async function main() {
	const args = process.argv.slice(2);
	let out = join(SLIDES_DIR, 'out'), force = false;
	const decks = [];
	while (args.length) {
		const a = args.shift();
		if (a === '--out' && args.length)
			out = resolve(args.shift());
		else if (a === '--force')
			force = true;
		else if (a.startsWith('-')) {
			console.error('usage: node slides/build.mjs [--force] [--out DIR] [DECK.md ...]');
			process.exit(2);
		} else
			decks.push(a);
	}
	if (!decks.length)
		decks.push(...listDecks());
	mkdirSync(out, { recursive: true });
	// Images next to the decks: the HTML refers to them by relative path.
	if (existsSync(join(SLIDES_DIR, 'images')))
		cpSync(join(SLIDES_DIR, 'images'), join(out, 'images'), { recursive: true });

	// Marp CLI leaves its Chromium profile in os.tmpdir(): give it one we remove.
	const runTmp = mkdtempSync(join(tmpdir(), 'slides-build-'));
	process.env.TMPDIR = runTmp;
	chromiumHome(runTmp);
	let browser = null;	// started for the first deck that needs it
	try {
		for (const deck of decks) {
			if (!isDeck(deck))
				throw new Error(`${deck} is not a deck (no \`marp: true\` in its front matter)`);
			const name = deckName(deck);
			const files = [`${name}-handout.pdf`, `${name}-presenter.pdf`, `${name}.html`];
			if (!force && upToDate(deck, files.map((f) => join(out, f)))) {
				console.log(`slides: ${name}: up to date`);
				continue;
			}
			const t0 = Date.now();
			browser ??= await launchChromium();
			const tmp = mkdtempSync(join(out, '.build-'));	// same file system: rename
			const html = join(tmp, `${name}.html`);
			try {
				await marp(['--output', html, resolve(deck)]);
				await marp(['--pdf', '--pdf-outlines', '--output', join(tmp, files[0]), resolve(deck)]);
				await presenterPdf(browser, deck, html, join(tmp, files[1]));
				// All three or none; the HTML last.
				for (const f of files)
					renameSync(join(tmp, f), join(out, f));
			} finally {
				rmSync(tmp, { recursive: true, force: true });
			}
			console.log(`slides: ${name}: ${relative(process.cwd(), join(out, name))}.html, -handout.pdf, -presenter.pdf ` +
				`(${((Date.now() - t0) / 1000).toFixed(1)} s)`);
		}
	} finally {
		await browser?.close();
		rmSync(runTmp, { recursive: true, force: true });
	}
}

main().catch((e) => {
	console.error(`slides: ${e.message || e}`);
	process.exit(1);
});

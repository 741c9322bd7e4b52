// lib.mjs - what build.mjs and check.mjs share: which files are decks, what a
// deck declares in its front matter, Marp CLI with the project's settings, and
// Debian's Chromium started the one way this project starts it.
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { marpCli } from '@marp-team/marp-cli';
import puppeteer from 'puppeteer-core';

export const SLIDES_DIR = dirname(fileURLToPath(import.meta.url));
const CONFIG = join(SLIDES_DIR, 'marp.config.mjs');

// Debian's chromium; CHROME_PATH overrides it (Marp CLI reads it too).
export const CHROME = process.env.CHROME_PATH || '/usr/bin/chromium';

// The flags every headless start uses: no sandbox (we run as root in CI),
// and no background traffic (this machine has no network but the registries).
export const CHROME_ARGS = [
	'--headless', '--no-sandbox', '--disable-gpu',
	'--disable-background-networking', '--disable-component-update',
	'--disable-sync', '--no-first-run', '--disable-dev-shm-usage',
];

// Marp CLI starts its own Chromium for PDFs: tell it which one and how.
process.env.CHROME_PATH = CHROME;
process.env.CHROME_NO_SANDBOX = '1';
process.env.CHROME_DISABLE_GPU = '1';

// The front matter (the block between the first two `---` lines) as
// key -> string; only the flat `key: value` lines the decks use.
export function frontMatter(text) {
	const m = /^---\r?\n([\s\S]*?)\r?\n---\r?\n/.exec(text);
	const fm = {};
	if (!m)
		return fm;
	for (const line of m[1].split(/\r?\n/)) {
		const kv = /^([A-Za-z_][\w-]*):\s*(.*?)\s*$/.exec(line);
		if (kv)
			fm[kv[1]] = kv[2].replace(/^"(.*)"$/, '$1');
	}
	return fm;
}

// A deck is a Markdown file whose front matter says `marp: true`;
// slides/README.md (the instructor's guide) is not one.
export function isDeck(path) {
	return frontMatter(readFileSync(path, 'utf8')).marp === 'true';
}

export function listDecks(dir = SLIDES_DIR) {
	return readdirSync(dir)
		.filter((f) => f.endsWith('.md'))
		.sort()
		.map((f) => join(dir, f))
		.filter(isDeck);
}

// The slide count a deck declares (`slides: N` in its front matter), or null.
export function declaredSlides(path) {
	const n = frontMatter(readFileSync(path, 'utf8')).slides;
	return n !== undefined && /^\d+$/.test(n) ? Number(n) : null;
}

export const deckName = (path) => basename(path, '.md');

// Run Marp CLI in this process with the project's config; throws on failure.
// Its progress lines go to stderr only when `verbose`.
export async function marp(args, { verbose = false } = {}) {
	const write = process.stderr.write;
	if (!verbose)
		process.stderr.write = () => true;
	let code;
	try {
		code = await marpCli(['--config-file', CONFIG, ...args]);
	} finally {
		process.stderr.write = write;
	}
	if (code !== 0)
		throw new Error(`marp ${args.join(' ')}: exit status ${code}`);
}

// A deck as Marp CLI's bare template: every slide in one page, no viewer
// script, exactly what the PDFs print. Relative paths (images) resolve
// from the deck's folder, as in the PDFs. Written into `dir`; returns its path.
export async function bareHtml(deck, dir) {
	const out = join(dir, `${deckName(deck)}.bare.html`);
	await marp(['--template', 'bare', '--output', out, resolve(deck)]);
	const base = pathToFileURL(dirname(resolve(deck)) + '/').href;
	const html = readFileSync(out, 'utf8').replace('<head>', `<head><base href="${base}">`);
	writeFileSync(out, html);
	return out;
}

// Chromium keeps a profile, caches and crash reports under $HOME and the XDG
// folders: point them (for ours and Marp CLI's) at `dir`, removed after the run.
export function chromiumHome(dir) {
	for (const v of ['HOME', 'XDG_CONFIG_HOME', 'XDG_CACHE_HOME', 'XDG_DATA_HOME'])
		process.env[v] = dir;
}

export async function launchChromium() {
	return puppeteer.launch({
		executablePath: CHROME,
		headless: true,
		args: CHROME_ARGS,
	});
}

// A page that may load local files only: any http(s) request is refused and
// reported through `onRemote(url)`.
export async function offlinePage(browser, onRemote) {
	const page = await browser.newPage();
	await page.setRequestInterception(true);
	page.on('request', (req) => {
		const url = req.url();
		if (/^(file|data|blob|about):/.test(url)) {
			req.continue();
		} else {
			onRemote(url);
			req.abort();
		}
	});
	return page;
}

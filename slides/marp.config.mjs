// Marp CLI settings for the decks (used by build.mjs and check.mjs).
//
// Offline by design: Marp's defaults turn emoji into <img> tags that load
// from a CDN and typeset math with fonts that may be fetched; the decks use
// neither, so both are off, and check.mjs fails a deck that still asks the
// network for anything.
export default {
  allowLocalFiles: true,
  lang: 'en',
  // theme/workbook.css: the decks' theme (`theme: workbook`).
  themeSet: ['./theme'],
  options: {
    emoji: { shortcode: false, unicode: false },
    math: false,
  },
}

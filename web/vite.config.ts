import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

/**
 * The console's build (`web/build.ts`, at the panel's start) and dev server (`npm run dev:web`).
 * The dev server proxies the operator API to a running panel (MYOSICAM_PANEL_URL, default the
 * local `npm start`), presenting the panel's own origin so its session-cookie origin check passes.
 */
const panel = process.env.MYOSICAM_PANEL_URL ?? "https://127.0.0.1:8443";

export default defineConfig({
  root: import.meta.dirname,
  plugins: [react()],
  build: {
    target: "es2022",
    // The charts are their own chunk: the overview does not load them.
    chunkSizeWarningLimit: 800,
  },
  server: {
    port: 5173,
    proxy: {
      "^/myosicam\\.panel\\.v1\\..*": { target: panel, secure: false, changeOrigin: true, headers: { origin: panel } },
    },
  },
});

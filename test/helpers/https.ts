import { connect as http2Connect } from "node:http2";
import { request as httpsRequest } from "node:https";

/** A response read whole. */
export interface SimpleResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** "2" or "1.1": what was actually spoken. */
  httpVersion: string;
}

/** GET over HTTP/2, trusting only `ca`. */
export function getHttp2(url: string, ca: string, headers: Record<string, string> = {}): Promise<SimpleResponse> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const session = http2Connect(target.origin, { ca });
    session.on("error", reject);
    const req = session.request({ ":path": target.pathname + target.search, ...headers });
    let body = "";
    let head: Record<string, string | string[] | undefined> = {};
    req.on("response", (h) => (head = h as typeof head));
    req.setEncoding("utf8");
    req.on("data", (c: string) => (body += c));
    req.on("end", () => {
      session.close();
      resolve({ status: Number(head[":status"]), headers: head, body, httpVersion: "2" });
    });
    req.on("error", reject);
    req.end();
  });
}

/** GET over HTTP/1.1 (no ALPN h2 offered), trusting only `ca`. */
export function getHttp1(url: string, ca: string): Promise<SimpleResponse> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, httpVersion: res.httpVersion }));
    });
    req.on("error", reject);
    req.end();
  });
}

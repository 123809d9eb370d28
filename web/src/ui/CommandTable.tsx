import { Link } from "react-router";
import type { Command } from "../../../gen/myosicam/panel/v1/command_pb.js";
import { commandKindWord, commandStatusWord } from "../api/commands";
import { formatTime } from "../api/format";
import { Badge, scrollRegion } from "./common";

/** Commands with when, what, status and the agent's answer; the server column unless the page is one server's. */
export function CommandTable({ commands, label, showServer }: { commands: Command[]; label: string; showServer: boolean }) {
  return (
    <div {...scrollRegion(label)}>
      <table>
        <thead>
          <tr>
            <th>When</th>
            {showServer && <th>Server</th>}
            <th>Command</th>
            <th className="status">Status</th>
            <th>Result</th>
            <th className="hide-narrow">By</th>
          </tr>
        </thead>
        <tbody>
          {commands.map((c) => (
            <tr key={c.id}>
              <td>{formatTime(c.createdAt)}</td>
              {showServer && (
                <td>
                  <Link to={`/servers/${c.serverId}`}>{c.serverName}</Link>
                </td>
              )}
              <td>
                {commandKindWord(c.kind)}
                {c.instance ? ` ${c.instance}` : ""}
              </td>
              <td className="status">
                <Badge word={commandStatusWord(c.status)} />
              </td>
              <td className="wrap detail">{c.result || c.failureCode || "—"}</td>
              <td className="hide-narrow">{c.createdBy}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

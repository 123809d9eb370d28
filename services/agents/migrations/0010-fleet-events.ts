import type { Migration } from "../../lib/db.js";

/** The channel a new fleet event is announced on (payload: its id). */
export const fleetEventChannel = "myosicam_fleet_events";

/**
 * Fleet events (FleetService.WatchEvents): one row per change an operator's page shows live — a
 * server's status, an instance's runtime, a command's status, a new alert, an install's progress
 * — written by triggers in the transaction of the change itself, so no code path can change one
 * without its event, and announced with NOTIFY at commit. Rows are kept a day (the resume window).
 */
export const fleetEvents: Migration = {
  name: "agents/0010_fleet_events",
  async up(db) {
    await db.schema.createTable("fleet_events", (t) => {
      t.bigIncrements("id");
      t.timestamp("at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.text("kind").notNullable().comment("server, instance, command, alert, install_job");
      t.uuid("server_id").comment("null: not about one server (install jobs)");
      t.jsonb("data").notNullable();
      t.index(["at"]);
    });
    await db.raw(`
      create function fleet_event(kind text, server uuid, data jsonb) returns void language plpgsql as $$
      declare
        new_id bigint;
      begin
        -- The time of the change itself, not of its transaction's start (a long one would backdate it).
        insert into fleet_events (at, kind, server_id, data) values (clock_timestamp(), kind, server, data) returning id into new_id;
        perform pg_notify('${fleetEventChannel}', new_id::text);
      end $$;

      create function fleet_event_server() returns trigger language plpgsql as $$
      begin
        if tg_op = 'DELETE' then
          perform fleet_event('server', old.id, jsonb_build_object('name', old.name, 'status', 'removed'));
          return old;
        end if;
        perform fleet_event('server', new.id, jsonb_build_object('name', new.name, 'status', new.status, 'approved', new.approved, 'tags', to_jsonb(new.tags)));
        return new;
      end $$;
      create trigger servers_fleet_event after insert or delete on servers for each row execute function fleet_event_server();
      create trigger servers_fleet_event_update after update on servers for each row
        when (old.status is distinct from new.status or old.approved is distinct from new.approved or old.tags is distinct from new.tags or old.name is distinct from new.name)
        execute function fleet_event_server();

      create function fleet_event_instance() returns trigger language plpgsql as $$
      begin
        perform fleet_event('instance', new.server_id, jsonb_build_object('instance_id', new.id, 'name', new.name, 'running', new.running, 'pid', new.pid, 'gone', new.gone_at is not null));
        return new;
      end $$;
      create trigger instances_fleet_event after insert on instances for each row execute function fleet_event_instance();
      create trigger instances_fleet_event_update after update on instances for each row
        when (old.running is distinct from new.running or old.pid is distinct from new.pid or (old.gone_at is null) is distinct from (new.gone_at is null))
        execute function fleet_event_instance();

      create function fleet_event_command() returns trigger language plpgsql as $$
      begin
        perform fleet_event('command', new.server_id, jsonb_build_object('command_id', new.id, 'kind', new.kind, 'instance', new.instance, 'status', new.status, 'result', new.result));
        return new;
      end $$;
      create trigger commands_fleet_event after insert on commands for each row execute function fleet_event_command();
      create trigger commands_fleet_event_update after update on commands for each row
        when (old.status is distinct from new.status) execute function fleet_event_command();

      create function fleet_event_alert() returns trigger language plpgsql as $$
      begin
        perform fleet_event('alert', new.server_id, jsonb_build_object('alert_id', new.id, 'kind', new.kind, 'message', new.message));
        return new;
      end $$;
      create trigger alerts_fleet_event after insert on alerts for each row execute function fleet_event_alert();
    `);
  },
};

import { timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";

/** A protobuf Timestamp from a database value (a Date, or the text of one); unset for null. */
export const timestampOf = (d: Date | string | null | undefined): Timestamp | undefined => (d ? timestampFromDate(new Date(d)) : undefined);

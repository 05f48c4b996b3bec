/**
 * The node's services, one concern each, each a factory given only the components it needs and
 * Startable (start/stop), as js-libp2p shapes its own. MedmeshNode (../node.ts) composes them.
 */
export { NodeStore, type Restored } from './store.ts'
export { createBlobExchange, type BlobExchange, type BlobKind } from './blob-exchange.ts'
export { createLedgerSync, type LedgerSync } from './ledger-sync.ts'
export { createGossip, type Gossip } from './gossip.ts'
export { createSiteReports, type SiteReports } from './site-reports.ts'
export { createAddressBook, openAddressRecord, type AddressBook, type AddressRecord } from './address-book.ts'
export { createReachability, type Reachability, type Reachable } from './reachability.ts'
export { createMembership, type Membership } from './membership.ts'
export { createTrainingScheduler, type TrainingScheduler } from './training.ts'
export { createStopPolicy, type StopPolicy } from './stop-policy.ts'
export { createStatusService, nodeStatus, type StatusService } from './status.ts'
export { createTicker } from './ticker.ts'

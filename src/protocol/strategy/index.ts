/** The strategies by name: the manifest's aggregation rule picks one (see strategy.ts). */
import type { AggregationParams } from '../manifest.ts'
import type { Strategy } from './strategy.ts'
import { fedAvg } from './fedavg.ts'
import { fedAvgM } from './fedavgm.ts'
import { fedAdam } from './fedadam.ts'

export type { Strategy } from './strategy.ts'

export function strategyFor (rule: AggregationParams['rule']): Strategy {
  switch (rule) {
    case 'fedavg': return fedAvg
    case 'fedavgm': return fedAvgM
    case 'fedadam': return fedAdam
  }
}

/** The record board's file: what it stores, and what it reads back. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { decodeBoard, encodeBoard, type BoardRecord } from '../../../src/node/services/record-board.ts'

test('the stored board reads back as each member\'s record, base64', () => {
  const held = new Map<string, BoardRecord>([
    ['12D3KooWA', { peer: '12D3KooWA', seq: 5n, wire: Uint8Array.of(1, 2, 3) }],
    ['12D3KooWB', { peer: '12D3KooWB', seq: 7n, wire: Uint8Array.of(255) }]
  ])
  const text = encodeBoard(held)
  assert.is(text, '{"version":1,"records":{"12D3KooWA":"AQID","12D3KooWB":"/w=="}}\n')
  assert.equal(decodeBoard(Buffer.from(text)), { '12D3KooWA': 'AQID', '12D3KooWB': '/w==' })
})

test('nothing stored is no records; a file without records is none; one that is not JSON throws', () => {
  assert.equal(decodeBoard(null), {})
  assert.equal(decodeBoard(Buffer.from('{"version":1}')), {})
  assert.throws(() => decodeBoard(Buffer.from('{"version":')))
  assert.throws(() => decodeBoard(Buffer.from('null')))
})

test.run()
